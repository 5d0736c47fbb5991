"""Prompt reliability: per-candidate cues, a learned reliability head, softmax weights and its training loss.

Cues (each ``(B, K)``): CAM-response strength under the candidate's mask, cross-modal semantic consistency
of its region embedding with the lesion prompt, self-distilled mask consistency (the box prompt's mask vs the
point prompts' mask of the same candidate), and SAM's own IoU prediction.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

# the cues RadVLSM.forward stacks for each candidate, in order (the reliability head's input width)
CUE_NAMES = ("cam_response", "cam_coverage", "semantic_consistency", "mask_consistency", "sam_iou")
N_CUES = len(CUE_NAMES)


def _check_masks(masks: torch.Tensor, name: str) -> None:
    if masks.ndim != 5 or masks.shape[2] != 1:
        raise RadVLSMInputError(f"expected (B, K, 1, S, S), got {tuple(masks.shape)}", name)


def cam_response_cue(cam: torch.Tensor, masks_prob: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean CAM inside each candidate's (soft) mask minus the mean outside it.

    Args:
        cam: ``(B, 1, S, S)`` response map in ``[0, 1]`` (resized bilinearly if its size differs).
        masks_prob: ``(B, K, 1, S, S)`` mask probabilities.

    Returns:
        ``(B, K)`` in ``[-1, 1]``.
    """
    _check_masks(masks_prob, "masks_prob")
    if cam.ndim != 4 or cam.shape[1] != 1 or cam.shape[0] != masks_prob.shape[0]:
        raise RadVLSMInputError(f"expected ({masks_prob.shape[0]}, 1, H, W), got {tuple(cam.shape)}", "cam")
    if cam.shape[-2:] != masks_prob.shape[-2:]:
        cam = F.interpolate(cam, size=masks_prob.shape[-2:], mode="bilinear", align_corners=False)
    m = masks_prob[:, :, 0].flatten(2)  # (B, K, N)
    c = cam.flatten(1)[:, None].to(m.dtype)  # (B, 1, N)
    inside = (m * c).sum(-1) / (m.sum(-1) + eps)
    outside = ((1 - m) * c).sum(-1) / ((1 - m).sum(-1) + eps)
    return inside - outside


def cam_coverage_cue(cam: torch.Tensor, masks_prob: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Share of the whole response map's mass that falls inside each candidate's (soft) mask.

    The companion of :func:`cam_response_cue`: a small bright speck and the large bright lesion both have a
    high mean response inside, but only the lesion holds most of the image's response.

    Args:
        cam: ``(B, 1, S, S)`` response map in ``[0, 1]`` (resized bilinearly if its size differs).
        masks_prob: ``(B, K, 1, S, S)`` mask probabilities.

    Returns:
        ``(B, K)`` in ``[0, 1]``.
    """
    _check_masks(masks_prob, "masks_prob")
    if cam.ndim != 4 or cam.shape[1] != 1 or cam.shape[0] != masks_prob.shape[0]:
        raise RadVLSMInputError(f"expected ({masks_prob.shape[0]}, 1, H, W), got {tuple(cam.shape)}", "cam")
    if cam.shape[-2:] != masks_prob.shape[-2:]:
        cam = F.interpolate(cam, size=masks_prob.shape[-2:], mode="bilinear", align_corners=False)
    m = masks_prob[:, :, 0].flatten(2)
    c = cam.flatten(1)[:, None].to(m.dtype)
    return (m * c).sum(-1) / (c.sum(-1) + eps)


def semantic_consistency_cue(region_emb: torch.Tensor, lesion_text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between each candidate's projected region embedding and the lesion prompt.

    Args:
        region_emb: ``(B, K, E)`` region embeddings in the shared space.
        lesion_text_emb: ``(E,)`` (or ``(B, E)``) lesion prompt embedding.

    Returns:
        ``(B, K)`` in ``[-1, 1]``.
    """
    if region_emb.ndim != 3:
        raise RadVLSMInputError(f"expected (B, K, E), got {tuple(region_emb.shape)}", "region_emb")
    b, _, e = region_emb.shape
    if lesion_text_emb.shape not in ((e,), (b, e)):
        raise RadVLSMInputError(f"expected ({e},) or ({b}, {e}), got {tuple(lesion_text_emb.shape)}", "lesion_text_emb")
    text = lesion_text_emb.expand(b, e) if lesion_text_emb.ndim == 1 else lesion_text_emb
    return F.cosine_similarity(region_emb, text[:, None].to(region_emb.dtype), dim=-1)


def mask_consistency_cue(mask_a: torch.Tensor, mask_b: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """Soft Dice between the masks two prompts of the same candidate give (box vs points): self-distillation.

    Args:
        mask_a: ``(B, K, 1, S, S)`` probabilities (e.g. from the box).
        mask_b: ``(B, K, 1, S, S)`` probabilities (e.g. from the points).

    Returns:
        ``(B, K)`` in ``[0, 1]`` (two empty masks agree: 1).
    """
    _check_masks(mask_a, "mask_a")
    if mask_b.shape != mask_a.shape:
        raise RadVLSMInputError(f"expected {tuple(mask_a.shape)}, got {tuple(mask_b.shape)}", "mask_b")
    a, b = mask_a.flatten(2), mask_b.flatten(2)
    return (2 * (a * b).sum(-1) + smooth) / (a.sum(-1) + b.sum(-1) + smooth)


def stack_cues(*cues: torch.Tensor) -> torch.Tensor:
    """Stack ``(B, K)`` cues (CAM response, semantic consistency, mask consistency, SAM IoU prediction).

    Args:
        cues: tensors of one shape ``(B, K)``.

    Returns:
        ``(B, K, n)``.
    """
    if not cues:
        raise RadVLSMInputError("give at least one cue", "cues")
    shape = cues[0].shape
    for i, cue in enumerate(cues):
        if cue.ndim != 2 or cue.shape != shape:
            raise RadVLSMInputError(f"cue {i} has shape {tuple(cue.shape)}, expected (B, K) = {tuple(shape)}", "cues")
    return torch.stack([c.to(cues[0].dtype) for c in cues], dim=-1)


class ReliabilityHead(nn.Module):
    """A small MLP mapping the cues of each candidate to a reliability logit.

    Args:
        n_cues: cues per candidate.
        hidden: hidden width.
    """

    def __init__(self, n_cues: int = N_CUES, hidden: int = 32) -> None:
        super().__init__()
        if n_cues < 1 or hidden < 1:
            raise RadVLSMInputError(f"n_cues and hidden must be positive, got {n_cues} and {hidden}", "ReliabilityHead")
        self.n_cues = n_cues
        self.mlp = nn.Sequential(nn.Linear(n_cues, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, cues: torch.Tensor) -> torch.Tensor:
        """``(B, K, n_cues)`` -> reliability logits ``(B, K)``."""
        if cues.ndim != 3 or cues.shape[-1] != self.n_cues:
            raise RadVLSMInputError(f"expected (B, K, {self.n_cues}), got {tuple(cues.shape)}", "cues")
        return self.mlp(cues).squeeze(-1)


def reliability_weights(logits: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of reliability logits over each image's valid candidates.

    Args:
        logits: ``(B, K)``.
        valid: ``(B, K)`` bool; every row needs at least one valid candidate.
        temperature: softmax temperature (> 0).

    Returns:
        ``(B, K)``: rows sum to 1, invalid entries exactly 0.
    """
    if logits.ndim != 2:
        raise RadVLSMInputError(f"expected (B, K), got {tuple(logits.shape)}", "logits")
    if valid.shape != logits.shape:
        raise RadVLSMInputError(f"expected {tuple(logits.shape)}, got {tuple(valid.shape)}", "valid")
    if not temperature > 0:
        raise RadVLSMInputError(f"must be > 0, got {temperature}", "temperature")
    valid = valid.bool()
    if not bool(valid.any(dim=1).all()):
        raise RadVLSMInputError("every image needs at least one valid candidate", "valid")
    masked = (logits / temperature).masked_fill(~valid, float("-inf"))
    return torch.softmax(masked, dim=1).masked_fill(~valid, 0.0)


def mask_iou(masks_prob: torch.Tensor, truth: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU of each thresholded candidate mask with the thresholded truth (no gradient).

    Args:
        masks_prob: ``(B, K, 1, S, S)`` probabilities.
        truth: ``(B, 1, S, S)`` truth mask.
        threshold: binarisation threshold for both.

    Returns:
        ``(B, K)`` in ``[0, 1]``; two empty masks give 1.
    """
    _check_masks(masks_prob, "masks_prob")
    b = masks_prob.shape[0]
    if truth.ndim != 4 or truth.shape[0] != b or truth.shape[1:] != masks_prob.shape[2:]:
        expected = (b, 1, *masks_prob.shape[-2:])
        raise RadVLSMInputError(f"expected {expected}, got {tuple(truth.shape)}", "truth")
    with torch.no_grad():
        pred = (masks_prob > threshold).flatten(2)
        true = (truth > threshold).flatten(1)[:, None]
        inter = (pred & true).sum(-1).float()
        union = (pred | true).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def reliability_loss(
    logits: torch.Tensor,
    target_iou: torch.Tensor,
    valid: torch.Tensor,
    rank_weight: float = 0.5,
    min_gap: float = 0.05,
) -> torch.Tensor:
    """Regress ``sigmoid(logits)`` to each valid candidate's IoU with the truth, plus a pairwise ranking term.

    The ranking term is RankNet's logistic loss ``softplus(l_j - l_i)`` over valid pairs of one image whose
    target IoUs differ by more than ``min_gap`` (``i`` the better): the softmax weights depend only on the order
    and gaps of the logits, which the plain regression does not weigh directly.

    Args:
        logits: ``(B, K)`` reliability logits.
        target_iou: ``(B, K)`` targets in ``[0, 1]`` (see :func:`mask_iou`).
        valid: ``(B, K)`` bool.
        rank_weight: weight of the ranking term (0 disables it).
        min_gap: smallest IoU difference that makes a ranked pair.

    Returns:
        Scalar loss (0 when no candidate is valid).
    """
    if logits.ndim != 2 or target_iou.shape != logits.shape or valid.shape != logits.shape:
        raise RadVLSMInputError(
            f"expected logits, target_iou and valid of one (B, K) shape, got {tuple(logits.shape)}, "
            f"{tuple(target_iou.shape)}, {tuple(valid.shape)}",
            "reliability_loss",
        )
    v = valid.bool()
    target = target_iou.detach().to(logits.dtype)
    vf = v.to(logits.dtype)
    mse = ((torch.sigmoid(logits) - target) ** 2 * vf).sum() / vf.sum().clamp(min=1)
    if rank_weight <= 0:
        return mse
    better = (target[:, :, None] - target[:, None, :] > min_gap) & v[:, :, None] & v[:, None, :]  # (B, K, K)
    pair_loss = F.softplus(logits[:, None, :] - logits[:, :, None])  # [b, i, j] = softplus(l_j - l_i)
    n_pairs = better.sum()
    rank = (pair_loss * better.to(logits.dtype)).sum() / n_pairs.clamp(min=1).to(logits.dtype)
    return mse + rank_weight * rank
