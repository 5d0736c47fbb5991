"""Feature-level region prompts (MedP-CLIP style): points, boxes and masks steer the image features.

A region prompt of any form is first rasterised to one soft region map ``(B, 1, S, S)`` in the model
frame (:class:`RegionRasterizer`). :class:`RegionPromptEncoder` turns the map into an additive term on the
image encoder's output features, through a path whose last layer is zero-initialised, so that before
training the prompted features equal the unprompted ones exactly (Alpha-CLIP's alpha channel, moved to the
feature level so that the frozen, cached encoder pass is shared with every other task).
:class:`RegionContextFusion` keeps the whole image in view: the region embedding (features pooled under
the map) is completed with the global embedding of the same prompted features, again through a
zero-initialised layer::

    points | box | mask ─► RegionRasterizer ─► region map (B,1,S,S)
    features (B,C,h,w) + RegionPromptEncoder(map) ─► prompted features (B,C,h,w)
    pool(prompted, map) = region r (B,C);  mean(prompted) = global g (B,C)
    RegionContextFusion(r, g) ─► region embedding (B,C) ─► diagnosis head, zero-shot text scores
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)


class RegionRasterizer:
    """Points, a box and/or a mask (model frame) -> one soft region map ``(B, 1, S, S)`` in [0, 1].

    Foreground points become Gaussian blobs, a box its filled rectangle, a mask itself; the forms given
    together are united (maximum) and background points then carve their blobs out.

    Args:
        size: side ``S`` of the square model frame.
        point_sigma: standard deviation of a point's blob, as a fraction of ``S``.
    """

    def __init__(self, size: int, point_sigma: float = 0.03) -> None:
        if size < 2 or not 0.0 < point_sigma < 1.0:
            raise RadVLSMInputError(f"need size >= 2 and 0 < point_sigma < 1, got {size} and {point_sigma}", "size")
        self.size = int(size)
        self.point_sigma = float(point_sigma)

    def _grid(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        centres = torch.arange(self.size, device=device, dtype=torch.float32) + 0.5  # pixel centres
        return centres[None, :, None], centres[None, None, :]  # y (1, S, 1), x (1, 1, S)

    def points_map(self, points: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground and background blob maps of ``(B, P, 2)`` x, y points (labels 1 fg, 0 bg, -1 ignored).

        Returns:
            two ``(B, 1, S, S)`` maps (maximum of the blobs of each kind).
        """
        if points.ndim != 3 or points.shape[-1] != 2:
            raise RadVLSMInputError(f"points must be (B, P, 2) x, y pairs, got {tuple(points.shape)}", "points")
        labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device) if labels is None else labels
        if tuple(labels.shape) != tuple(points.shape[:2]):
            raise RadVLSMInputError(
                f"point_labels must be {tuple(points.shape[:2])}, got {tuple(labels.shape)}", "labels"
            )
        self._check_inside(points[labels >= 0].reshape(-1, 2), "points")
        ys, xs = self._grid(points.device)
        sigma = self.point_sigma * self.size
        b, p = points.shape[:2]
        d2 = (xs[None] - points[..., 0, None, None]) ** 2 + (ys[None] - points[..., 1, None, None]) ** 2  # (B,P,S,S)
        blobs = torch.exp(-d2 / (2 * sigma**2))
        fg = (blobs * (labels == 1)[..., None, None]).amax(dim=1, keepdim=True) if p else points.new_zeros(b, 1, 1, 1)
        bg = (blobs * (labels == 0)[..., None, None]).amax(dim=1, keepdim=True) if p else points.new_zeros(b, 1, 1, 1)
        return fg.expand(b, 1, self.size, self.size), bg.expand(b, 1, self.size, self.size)

    def box_map(self, boxes: torch.Tensor) -> torch.Tensor:
        """Filled ``(B, 4)`` x1, y1, x2, y2 boxes -> ``(B, 1, S, S)`` (1 where a pixel centre lies inside)."""
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise RadVLSMInputError(f"boxes must be (B, 4) x1, y1, x2, y2, got {tuple(boxes.shape)}", "box")
        if bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
            raise RadVLSMInputError(f"box {boxes.tolist()} has no area (need x2 > x1 and y2 > y1)", "box")
        self._check_inside(boxes.reshape(-1, 2), "box")
        ys, xs = self._grid(boxes.device)
        x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
        inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
        # a box thinner than a pixel still marks the pixel it lies on
        nearest = (xs - (x1 + x2) / 2).abs() <= 0.5
        nearest = nearest & ((ys - (y1 + y2) / 2).abs() <= 0.5)
        return (inside | nearest).float()[:, None]

    def __call__(
        self,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The region map of one prompt set per image.

        Args:
            points: ``(B, P, 2)`` or None, with ``point_labels`` ``(B, P)`` (1 fg, 0 bg; None = all fg).
            boxes: ``(B, 4)`` or None.
            masks: ``(B, 1, S, S)`` in [0, 1] (binary or soft) or None.

        Returns:
            ``(B, 1, S, S)`` float map in [0, 1].

        Raises:
            RadVLSMInputError: no prompt, prompts outside the frame, an empty region, mismatched shapes.
        """
        parts, background = [], None
        if masks is not None:
            if masks.ndim != 4 or tuple(masks.shape[1:]) != (1, self.size, self.size):
                raise RadVLSMInputError(
                    f"mask must be (B, 1, {self.size}, {self.size}), got {tuple(masks.shape)}", "mask"
                )
            parts.append(masks.float().clamp(0, 1))
        if boxes is not None:
            parts.append(self.box_map(boxes.float()))
        if points is not None:
            fg, background = self.points_map(points.float(), point_labels)
            if point_labels is None or bool((point_labels == 1).any()):
                parts.append(fg)
        if not parts:
            raise RadVLSMInputError("give a region as foreground points, a box or a mask", "region prompt")
        batch = {p.shape[0] for p in parts}
        if len(batch) != 1:
            raise RadVLSMInputError(f"prompts of different batch sizes {sorted(batch)}", "region prompt")
        region = torch.stack(parts).amax(dim=0)
        if background is not None:
            region = region * (1 - background)
        if bool((region.flatten(1).amax(1) < 1e-3).any()):
            raise RadVLSMInputError(
                "the region is empty (an empty mask, or background points cover it)", "region prompt"
            )
        return region

    def _check_inside(self, xy: torch.Tensor, name: str) -> None:
        outside = (xy < 0) | (xy > self.size) | ~torch.isfinite(xy)
        if bool(outside.any()):
            bad = xy[outside.any(dim=-1)][0].tolist()
            raise RadVLSMInputError(
                f"coordinate {bad} lies outside the {self.size}x{self.size} model frame (x, y in [0, {self.size}])",
                name,
            )


class RegionPromptEncoder(nn.Module):
    """Region map -> additive term on the image features; the path's last layer starts at zero.

    The map is brought to four times the feature grid and downscaled by two strided convolutions (as SAM's
    dense mask-prompt embedding), then a zero-initialised 1x1 convolution maps it to the feature channels.

    Args:
        feature_dim: channels ``C`` of the image encoder output.
        hidden: channels of the downscaling path.
    """

    def __init__(self, feature_dim: int, hidden: int = 32) -> None:
        super().__init__()
        if feature_dim < 1 or hidden < 4:
            raise RadVLSMInputError(f"need feature_dim >= 1 and hidden >= 4, got {feature_dim} and {hidden}", "sizes")
        self.feature_dim = feature_dim
        self.downscale = nn.Sequential(
            nn.Conv2d(1, hidden // 4, kernel_size=2, stride=2),
            LayerNorm2d(hidden // 4),
            nn.GELU(),
            nn.Conv2d(hidden // 4, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            nn.GELU(),
        )
        self.to_features = nn.Conv2d(hidden + 1, feature_dim, kernel_size=1)
        nn.init.zeros_(self.to_features.weight)
        nn.init.zeros_(self.to_features.bias)

    def forward(self, features: torch.Tensor, region_map: torch.Tensor) -> torch.Tensor:
        """Prompted features.

        Args:
            features: ``(B, C, h, w)`` image encoder output.
            region_map: ``(B, 1, S, S)`` soft region map in [0, 1].

        Returns:
            ``(B, C, h, w)``: ``features`` plus the prompt's term (exactly ``features`` before training).
        """
        if features.ndim != 4 or features.shape[1] != self.feature_dim:
            raise RadVLSMInputError(f"expected (B, {self.feature_dim}, h, w), got {tuple(features.shape)}", "features")
        if region_map.ndim != 4 or region_map.shape[:2] != (features.shape[0], 1):
            raise RadVLSMInputError(f"expected ({features.shape[0]}, 1, S, S), got {tuple(region_map.shape)}", "map")
        h, w = features.shape[-2:]
        region_map = region_map.to(features.dtype)
        dense = self.downscale(F.interpolate(region_map, size=(4 * h, 4 * w), mode="area"))
        alpha = F.interpolate(region_map, size=(h, w), mode="area")  # the map itself, as an alpha channel
        return features + self.to_features(torch.cat([dense, alpha], dim=1))


def pool_region(features: torch.Tensor, region_map: torch.Tensor) -> torch.Tensor:
    """Map-weighted mean of ``(B, C, h, w)`` features under ``(B, 1, S, S)`` region maps -> ``(B, C)``."""
    weights = F.adaptive_avg_pool2d(region_map.to(features.dtype), features.shape[-2:])  # (B, 1, h, w)
    summed = (features * weights).flatten(2).sum(-1)
    return summed / weights.flatten(2).sum(-1).clamp_min(1e-6)


class RegionContextFusion(nn.Module):
    """Region embedding with global context: ``r + W [r, g]``, ``W`` zero-initialised.

    Args:
        feature_dim: channels ``C``.
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2 * feature_dim)
        self.mix = nn.Linear(2 * feature_dim, feature_dim)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, region: torch.Tensor, global_emb: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` region and global embeddings -> ``(B, C)`` region embedding in context."""
        if region.shape != global_emb.shape or region.ndim != 2:
            raise RadVLSMInputError(
                f"expected two (B, C) tensors, got {tuple(region.shape)}, {tuple(global_emb.shape)}"
            )
        return region + self.mix(self.norm(torch.cat([region, global_emb], dim=-1)))
