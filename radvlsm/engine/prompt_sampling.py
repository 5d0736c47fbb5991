"""Prompts sampled from truth masks for training (jittered boxes, foreground points; tight boxes come from
:func:`radvlsm.models.candidates.boxes_from_masks`)."""

from __future__ import annotations

import torch


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
