"""MCRA: multi-candidate reliability aggregation of masks, diagnosis logits and region embeddings.

Diagnosis logits and region embeddings are reliability-weighted (softmax over valid candidates) sums. Masks
are aggregated per lesion so that several lesions survive: candidates whose binarised masks overlap
(IoU > ``cluster_iou``) are one lesion (greedy clustering seeded by the most reliable candidate); within a
lesion the probabilities are softmax-weighted by reliability; a lesion is kept when the sigmoid of its best
reliability logit reaches ``keep_threshold`` (the most reliable lesion always is); the fused mask is the
pixelwise max over kept lesions. The clustering and the keep decision are discrete; the rest is
differentiable w.r.t. the mask logits and the reliability logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.reliability import reliability_weights

logger = logging.getLogger(__name__)


@dataclass
class MCRAOutput:
    """Aggregated prediction.

    Args:
        mask_prob: ``(B, 1, S, S)`` fused mask probability.
        diag_logits: ``(B, 2)`` reliability-weighted diagnosis logits.
        region_emb: ``(B, C)`` reliability-weighted region embedding.
        weights: ``(B, K)`` reliability weights (rows sum to 1, invalid 0).
        kept: ``(B, K)`` bool, candidates of the kept lesions.
        clusters: ``(B, K)`` long lesion index of each candidate (0 the most reliable lesion, -1 invalid).
    """

    mask_prob: torch.Tensor
    diag_logits: torch.Tensor
    region_emb: torch.Tensor
    weights: torch.Tensor
    kept: torch.Tensor
    clusters: torch.Tensor


def binary_mask_iou(masks: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of boolean masks ``(B, K, N)`` -> ``(B, K, K)`` (two empty masks: 0)."""
    m = masks.float()
    inter = torch.bmm(m, m.transpose(1, 2))
    area = m.sum(-1)
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))


def greedy_clusters(iou: np.ndarray, logits: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster one image's candidates: the most reliable unassigned one seeds a cluster of all unassigned
    candidates overlapping it by IoU > ``threshold``.

    Args:
        iou: ``(K, K)``; logits: ``(K,)``; valid: ``(K,)`` bool; threshold: IoU for "same lesion".

    Returns:
        ``(K,)`` int cluster index, 0 for the most reliable cluster, -1 for invalid candidates.
    """
    cluster = np.full(len(logits), -1, dtype=np.int64)
    next_id = 0
    for seed in np.argsort(-logits, kind="stable"):
        if not valid[seed] or cluster[seed] >= 0:
            continue
        members = valid & (cluster < 0) & (iou[seed] > threshold)
        members[seed] = True
        cluster[members] = next_id
        next_id += 1
    return cluster


class MCRA(nn.Module):
    """Multi-candidate reliability aggregation (no weights of its own).

    Args:
        cluster_iou: mask IoU above which two candidates are the same lesion.
        keep_threshold: reliability (sigmoid of the lesion's best logit) needed to keep further lesions.
        temperature: softmax temperature of the reliability weights, within a lesion and over all candidates
            (lower: closer to the single most reliable candidate).
    """

    def __init__(self, cluster_iou: float = 0.3, keep_threshold: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= cluster_iou < 1.0 or not 0.0 <= keep_threshold <= 1.0 or not temperature > 0:
            raise RadVLSMInputError(
                f"need 0 <= cluster_iou < 1, 0 <= keep_threshold <= 1 and temperature > 0, got {cluster_iou}, "
                f"{keep_threshold}, {temperature}",
                "MCRA",
            )
        self.cluster_iou = cluster_iou
        self.keep_threshold = keep_threshold
        self.temperature = temperature

    def forward(
        self,
        mask_logits: torch.Tensor,
        diag_logits: torch.Tensor,
        region_emb: torch.Tensor,
        reliability_logits: torch.Tensor,
        valid: torch.Tensor,
    ) -> MCRAOutput:
        """Aggregate K candidates per image.

        Args:
            mask_logits: ``(B, K, 1, S, S)``.
            diag_logits: ``(B, K, n_classes)``.
            region_emb: ``(B, K, C)``.
            reliability_logits: ``(B, K)``.
            valid: ``(B, K)`` bool, at least one valid per image.

        Returns:
            :class:`MCRAOutput`.
        """
        if mask_logits.ndim != 5 or mask_logits.shape[2] != 1:
            raise RadVLSMInputError(f"expected (B, K, 1, S, S), got {tuple(mask_logits.shape)}", "mask_logits")
        b, k = mask_logits.shape[:2]
        for name, t in (("diag_logits", diag_logits), ("region_emb", region_emb)):
            if t.ndim != 3 or t.shape[:2] != (b, k):
                raise RadVLSMInputError(f"expected ({b}, {k}, D), got {tuple(t.shape)}", name)
        for name, t in (("reliability_logits", reliability_logits), ("valid", valid)):
            if t.shape != (b, k):
                raise RadVLSMInputError(f"expected ({b}, {k}), got {tuple(t.shape)}", name)
        valid = valid.bool()
        weights = reliability_weights(reliability_logits, valid, self.temperature)
        fused_diag = (weights[..., None] * diag_logits).sum(1)
        fused_region = (weights[..., None] * region_emb).sum(1)

        probs = torch.sigmoid(mask_logits[:, :, 0])  # (B, K, S, S)
        with torch.no_grad():
            iou = binary_mask_iou((probs > 0.5).flatten(2)).cpu().numpy()
            logits_np = reliability_logits.detach().float().cpu().numpy()
            valid_np = valid.cpu().numpy()
            clusters_np = np.stack(
                [greedy_clusters(iou[i], logits_np[i], valid_np[i], self.cluster_iou) for i in range(b)]
            )
        clusters = torch.from_numpy(clusters_np).to(mask_logits.device)
        member = clusters[:, None, :] == torch.arange(k, device=clusters.device)[None, :, None]  # (B, cluster, K)
        lowest = torch.finfo(reliability_logits.dtype).min  # finite: an empty cluster's softmax stays NaN-free
        masked = reliability_logits[:, None, :].masked_fill(~member, lowest)
        nonempty = member.any(-1)  # (B, cluster)
        within = torch.softmax(masked / self.temperature, dim=-1).masked_fill(~member, 0.0)
        cluster_masks = torch.einsum("bck,bkhw->bchw", within, probs)
        best_logit = masked.max(dim=-1).values
        reliable = torch.sigmoid(best_logit) >= self.keep_threshold
        keep = nonempty & (reliable | (torch.arange(k, device=clusters.device) == 0)[None])
        fused_mask = cluster_masks.masked_fill(~keep[..., None, None], 0.0).max(dim=1).values[:, None]
        kept = (member & keep[..., None]).any(1)
        logger.debug("MCRA: %s lesions kept of %s", keep.sum(1).tolist(), nonempty.sum(1).tolist())
        return MCRAOutput(
            mask_prob=fused_mask,
            diag_logits=fused_diag,
            region_emb=fused_region,
            weights=weights,
            kept=kept,
            clusters=clusters,
        )
