"""Prompts sampled from truth masks for training (jittered boxes, foreground points, correction clicks; tight
boxes come from :func:`radvlsm.models.candidates.boxes_from_masks`)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def jitter_boxes(boxes: torch.Tensor, size: int, fraction: float, generator: torch.Generator | None = None):
    """Move each box side by up to ``fraction`` of the box's extent, clipped to ``[0, size]``.

    Args:
        boxes: ``(B, 4)``.
        size: side of the frame.
        fraction: maximum shift as a fraction of width/height.
        generator: for deterministic sampling.

    Returns:
        ``(B, 4)`` boxes with ``x1 < x2`` and ``y1 < y2``.
    """
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    noise = (torch.rand(boxes.shape, generator=generator) * 2 - 1).to(boxes.device) * fraction * wh
    out = (boxes + noise).clamp(0, size)
    out[:, 2:] = torch.maximum(out[:, 2:], out[:, :2] + 1).clamp(max=size)
    out[:, :2] = torch.minimum(out[:, :2], out[:, 2:] - 1)
    return out


def foreground_points(masks: torch.Tensor, generator: torch.Generator | None = None, n: int = 1) -> torch.Tensor:
    """``n`` random foreground pixel centres per ``(B, 1, H, W)`` mask -> ``(B, n, 2)`` x, y (frame centre if empty)."""
    b, _, h, w = masks.shape
    out = torch.tensor([[w / 2.0, h / 2.0]]).repeat(b, n, 1)
    for i in range(b):
        ys, xs = torch.nonzero(masks[i, 0] > 0.5, as_tuple=True)
        if ys.numel():
            j = torch.randint(ys.numel(), (n,), generator=generator)
            out[i] = torch.stack([xs[j], ys[j]], dim=-1).float() + 0.5
    return out.to(masks.device)


def correction_click(mask: np.ndarray, truth: np.ndarray) -> tuple[list[float], int] | None:
    """The click that corrects ``mask`` most, as interactive-segmentation benchmarks simulate a user.

    Args:
        mask: ``(H, W)`` predicted mask; truth: ``(H, W)`` truth mask.

    Returns:
        ``([x, y], label)`` at the innermost pixel of the largest connected region where ``mask`` and ``truth``
        disagree (label 1 where the truth is lesion, 0 where it is not), or None when they agree everywhere.
    """
    error = mask.astype(bool) ^ truth.astype(bool)
    if not error.any():
        return None
    regions, n = ndimage.label(error)
    largest = regions == 1 + int(np.argmax(ndimage.sum(error, regions, range(1, n + 1))))
    inner = ndimage.distance_transform_edt(np.pad(largest, 1))[1:-1, 1:-1]  # the frame's edge counts as outside
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return [float(x) + 0.5, float(y) + 0.5], int(truth[y, x])


def correction_clicks(masks: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`correction_click` for a batch.

    Args:
        masks: ``(B, 1, H, W)`` predicted masks (bool or > 0.5); truth: ``(B, 1, H, W)``.

    Returns:
        points ``(B, 1, 2)`` (x, y), labels ``(B, 1)`` long and ``(B,)`` bool: True where a click was placed
        (False where the mask is already right; that row's point is the frame centre, label 1).
    """
    b, _, h, w = masks.shape
    points = torch.tensor([[[w / 2.0, h / 2.0]]]).repeat(b, 1, 1)
    labels = torch.ones(b, 1, dtype=torch.long)
    placed = torch.zeros(b, dtype=torch.bool)
    pred = (masks > 0.5).cpu().numpy()
    true = (truth > 0.5).cpu().numpy()
    for i in range(b):
        click = correction_click(pred[i, 0], true[i, 0])
        if click is not None:
            points[i, 0] = torch.tensor(click[0])
            labels[i, 0] = click[1]
            placed[i] = True
    return points.to(masks.device), labels.to(masks.device), placed.to(masks.device)
