"""Semantic-guided lesion focusing: class-agnostic prompt -> response map (CAM), with a Grad-CAM option.

:class:`LesionFocus` is the patch-text similarity map; :class:`TextConditionedFocus` (the model's focusing head)
adds a dense, prompt-conditioned correction trained on the truth masks with :func:`focus_loss`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.nets import BasicUNet
from torch import nn

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)


class LesionFocus(nn.Module):
    """Scaled cosine similarity between patch embeddings and a prompt embedding, plus a bias, as logits.

    Args:
        init_temperature: initial temperature ``tau``; the logits are ``cos / tau + bias``.
        learnable: learn the temperature and the bias (else they are fixed buffers).
    """

    def __init__(self, init_temperature: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        if not init_temperature > 0:
            raise RadVLSMInputError(f"must be > 0, got {init_temperature}", "init_temperature")
        log_scale = torch.tensor(math.log(1.0 / init_temperature))
        bias = torch.tensor(0.0)
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("log_scale", log_scale)
            self.register_buffer("bias", bias)

    def forward(self, patch_emb: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        """Focusing logits.

        Args:
            patch_emb: ``(B, E, h, w)`` patch embeddings.
            prompt_emb: ``(E,)`` one prompt for all images, or ``(B, E)`` one per image.

        Returns:
            ``(B, 1, h, w)`` logits.
        """
        if patch_emb.ndim != 4:
            raise RadVLSMInputError(f"expected (B, E, h, w), got {tuple(patch_emb.shape)}", "patch_emb")
        b, e = patch_emb.shape[:2]
        if prompt_emb.ndim == 1:
            prompt_emb = prompt_emb[None].expand(b, -1)
        if prompt_emb.shape != (b, e):
            raise RadVLSMInputError(f"expected ({e},) or ({b}, {e}), got {tuple(prompt_emb.shape)}", "prompt_emb")
        cos = torch.einsum("behw,be->bhw", F.normalize(patch_emb, dim=1), F.normalize(prompt_emb, dim=-1))
        scale = self.log_scale.exp().clamp(max=100.0)
        return (scale * cos + self.bias)[:, None]

    def response_map(self, patch_emb: torch.Tensor, prompt_emb: torch.Tensor, minmax: bool = False) -> torch.Tensor:
        """Response map in ``[0, 1]``.

        Args:
            patch_emb: ``(B, E, h, w)``.
            prompt_emb: ``(E,)`` or ``(B, E)``.
            minmax: rescale each image's map to span ``[0, 1]`` (a constant map becomes zeros).

        Returns:
            ``(B, 1, h, w)``.
        """
        cam = torch.sigmoid(self(patch_emb, prompt_emb))
        return minmax_per_image(cam) if minmax else cam

    @staticmethod
    def upsample(cam: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
        """Bilinear resize of a map ``(B, 1, h, w)`` to ``(B, 1, S, S)`` (``size`` an int or ``(H, W)``)."""
        if cam.ndim != 4:
            raise RadVLSMInputError(f"expected (B, 1, h, w), got {tuple(cam.shape)}", "cam")
        size = (size, size) if isinstance(size, int) else tuple(size)
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)


class TextConditionedFocus(nn.Module):
    """Mask-supervised lesion focusing conditioned on the lesion prompt (FiLM, as in CLIPSeg / DenseCLIP).

    The patch-text similarity map of :class:`LesionFocus` plus a dense correction: the image embedding and the
    similarity map go through residual 3x3 convolution blocks whose features are scaled and shifted by the
    prompt embedding (FiLM), then optionally through a context U-Net (MONAI ``BasicUNet``, residual, four
    poolings: its receptive field spans the frame, so the head can tell the lesion from lesion-like tissue
    elsewhere, which 3x3 blocks alone cannot), then a transposed convolution doubles the resolution. The
    correction's last layer starts at zero, so an untrained head is exactly the similarity map. Several lesions
    give several blobs.

    Args:
        image_dim: channels ``C`` of the image embedding.
        prompt_dim: size ``E`` of the projected prompt embedding (and of the projected patches).
        hidden: channels of the dense blocks.
        layers: number of FiLM blocks.
        context_features: the context U-Net's six feature sizes (``BasicUNet``'s ``features``); empty for none.
    """

    def __init__(
        self, image_dim: int, prompt_dim: int, hidden: int, layers: int, context_features: Sequence[int]
    ) -> None:
        super().__init__()
        if min(image_dim, prompt_dim, hidden, layers) < 1 or hidden % 4:
            raise RadVLSMInputError(
                f"need positive sizes and hidden divisible by 4, got {image_dim}, {prompt_dim}, {hidden}, {layers}",
                "TextConditionedFocus",
            )
        context_features = tuple(int(f) for f in context_features)
        if context_features and (len(context_features) != 6 or any(f < 4 or f % 4 for f in context_features)):
            raise RadVLSMInputError(
                f"expected six positive multiples of 4 (BasicUNet features), got {context_features}", "context_features"
            )
        self.similarity = LesionFocus()
        self.stem = nn.Conv2d(image_dim + 1, hidden, kernel_size=1)
        self.blocks = nn.ModuleList(nn.Conv2d(hidden, hidden, kernel_size=3, padding=1) for _ in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(4, hidden) for _ in range(layers))
        self.film = nn.Linear(prompt_dim, 2 * hidden * layers)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.context = (
            BasicUNet(
                spatial_dims=2,
                in_channels=hidden,
                out_channels=hidden,
                features=context_features,
                act="GELU",
                norm=("group", {"num_groups": 4}),
            )
            if context_features
            else None
        )
        self.up = nn.ConvTranspose2d(hidden, hidden // 2, kernel_size=2, stride=2)
        self.head = nn.Conv2d(hidden // 2, 1, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, embeddings: torch.Tensor, patch_emb: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        """Focusing logits.

        Args:
            embeddings: ``(B, C, h, w)`` image embeddings.
            patch_emb: ``(B, E, h, w)`` projected patch embeddings (the similarity map's input).
            prompt_emb: ``(E,)`` or ``(B, E)`` lesion prompt embedding.

        Returns:
            ``(B, 1, 2h, 2w)`` logits.
        """
        if embeddings.ndim != 4 or embeddings.shape[-2:] != patch_emb.shape[-2:]:
            raise RadVLSMInputError(
                f"expected (B, C, h, w) matching the patches {tuple(patch_emb.shape)}, got {tuple(embeddings.shape)}",
                "embeddings",
            )
        sim = self.similarity(patch_emb, prompt_emb)  # (B, 1, h, w)
        b = embeddings.shape[0]
        prompt = prompt_emb[None].expand(b, -1) if prompt_emb.ndim == 1 else prompt_emb
        gamma_beta = self.film(F.normalize(prompt, dim=-1)).view(b, len(self.blocks), 2, -1, 1, 1)
        x = self.stem(torch.cat([embeddings, sim], dim=1))
        for i, (conv, norm) in enumerate(zip(self.blocks, self.norms, strict=True)):
            y = norm(conv(x)) * (1 + gamma_beta[:, i, 0]) + gamma_beta[:, i, 1]
            x = x + F.gelu(y)
        if self.context is not None:
            x = x + self.context(x)
        correction = self.head(F.gelu(self.up(x)))
        return F.interpolate(sim, scale_factor=2, mode="bilinear", align_corners=False) + correction


def minmax_per_image(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rescale each image of ``(B, ...)`` to ``[0, 1]``; a constant image becomes zeros."""
    flat = x.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp(min=eps), torch.zeros_like(flat))
    return out.view_as(x)


def grad_cam(score: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of a scalar score on feature maps (channel weights = spatially averaged gradients).

    Args:
        score: scalar tensor computed from ``feats`` (e.g. the summed image-prompt similarity).
        feats: ``(B, C, h, w)`` features that require grad and are part of ``score``'s graph.

    Returns:
        ``(B, 1, h, w)`` in ``[0, 1]`` (ReLU, then per-image max-normalised), detached.
    """
    if score.numel() != 1:
        raise RadVLSMInputError(f"must be a scalar, got shape {tuple(score.shape)}", "score")
    if feats.ndim != 4:
        raise RadVLSMInputError(f"expected (B, C, h, w), got {tuple(feats.shape)}", "feats")
    if not feats.requires_grad:
        raise RadVLSMInputError("must require grad and be part of the score's graph", "feats")
    (grads,) = torch.autograd.grad(score.reshape(()), feats, retain_graph=True, allow_unused=True)
    if grads is None:
        raise RadVLSMInputError("score does not depend on feats", "feats")
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feats).sum(dim=1, keepdim=True)).detach()
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-8)
    return cam / peak[:, None, None, None]


def focus_loss(cam_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Supervised focusing: BCE + Dice between the focusing logits and the truth mask at the patch grid.

    Args:
        cam_logits: ``(B, 1, h, w)`` logits of :class:`LesionFocus`.
        mask: ``(B, 1, H, W)`` truth mask in ``{0, 1}``; area-downsampled to ``(h, w)`` (soft targets).

    Returns:
        Scalar loss.
    """
    if cam_logits.ndim != 4 or cam_logits.shape[1] != 1:
        raise RadVLSMInputError(f"expected (B, 1, h, w), got {tuple(cam_logits.shape)}", "cam_logits")
    if mask.ndim != 4 or mask.shape[:2] != cam_logits.shape[:2]:
        raise RadVLSMInputError(f"expected ({cam_logits.shape[0]}, 1, H, W), got {tuple(mask.shape)}", "mask")
    target = F.interpolate(mask.to(cam_logits.dtype), size=cam_logits.shape[-2:], mode="area")
    bce = F.binary_cross_entropy_with_logits(cam_logits, target)
    dice = DiceLoss(sigmoid=True, reduction="mean")(cam_logits, target)
    return bce + dice
