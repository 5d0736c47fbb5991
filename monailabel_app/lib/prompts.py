"""Prompts as OHIF and 3D Slicer send them, checked and turned into :meth:`RadVLSM.predict` arguments.

- ``foreground`` / ``background``: ``[[x, y], ...]`` or ``[[x, y, z], ...]`` pixel indices (x the column,
  y the row, as MONAI Label clients send voxel indices); ``z`` must be 0 (one slice). A click on pixel
  ``(x, y)`` is passed to the model at the pixel centre ``(x + 0.5, y + 0.5)``.
- ``roi``: ``[x1, y1, x2, y2]`` or ``[x1, y1, x2, y2, z1, z2]`` (MONAI Label's box layout) in pixel edges;
  a box reaching past the border is clipped to the image, one wholly outside it is an error.
"""

from __future__ import annotations

import json
import math
from typing import Any

from radvlsm.errors import RadVLSMInputError


def _as_list(value: Any, name: str) -> list:
    """A JSON list given as a list or as JSON text; empty for None/""."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RadVLSMInputError(f"is not JSON ({exc})", name) from exc
    if not isinstance(value, list | tuple):
        raise RadVLSMInputError(f"must be a list, got {type(value).__name__}", name)
    return list(value)


def _numbers(values: Any, name: str) -> list[float]:
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise RadVLSMInputError(f"expected numbers, got {values!r}", name)
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise RadVLSMInputError(f"has a non-finite value: {values!r}", name)
    return out


def parse_points(value: Any, name: str, size_hw: tuple[int, int]) -> list[list[float]]:
    """Client clicks -> ``[[x, y], ...]`` model-ready pixel-centre coordinates.

    Args:
        value: the request's list of ``[x, y]`` or ``[x, y, z]`` pixel indices (or its JSON text).
        name: ``"foreground"`` or ``"background"`` (for messages).
        size_hw: ``(H, W)`` of the image.

    Raises:
        RadVLSMInputError: malformed points, a point on another slice, or outside the image.
    """
    h, w = size_hw
    points = []
    for raw in _as_list(value, name):
        p = _numbers(raw, name)
        if len(p) not in (2, 3):
            raise RadVLSMInputError(f"each point must be [x, y] or [x, y, z], got {raw!r}", name)
        if len(p) == 3 and p[2] != 0:
            raise RadVLSMInputError(f"point {raw!r} is on slice {p[2]:g}; this 2D image has one slice (z = 0)", name)
        if not (0 <= p[0] < w and 0 <= p[1] < h):
            raise RadVLSMInputError(
                f"point {raw!r} lies outside the {w}x{h} image (x in 0..{w - 1}, y in 0..{h - 1})", name
            )
        points.append([p[0] + 0.5, p[1] + 0.5])
    return points


def parse_roi(value: Any, size_hw: tuple[int, int], name: str = "roi") -> list[float] | None:
    """Client ROI -> ``[x1, y1, x2, y2]`` inside the image, or None when there is none.

    Raises:
        RadVLSMInputError: not 4 or 6 numbers, no area, or wholly outside the image.
    """
    raw = _as_list(value, name)
    if not raw:
        return None
    box = _numbers(raw, name)
    if len(box) not in (4, 6):
        raise RadVLSMInputError(f"must be [x1, y1, x2, y2] (or with z1, z2), got {raw!r}", name)
    x1, y1, x2, y2 = box[:4]
    if x2 <= x1 or y2 <= y1:
        raise RadVLSMInputError(f"{raw!r} has no area (need x2 > x1 and y2 > y1)", name)
    h, w = size_hw
    clipped = [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise RadVLSMInputError(f"{raw!r} lies outside the {w}x{h} image", name)
    return clipped


def parse_clicks(data: dict[str, Any], size_hw: tuple[int, int]) -> dict[str, Any]:
    """The request's ``foreground`` and ``background`` clicks -> ``points`` and ``point_labels`` (empty: ``{}``).

    Raises:
        RadVLSMInputError: a malformed click or one outside the image.
    """
    fg = parse_points(data.get("foreground"), "foreground", size_hw)
    bg = parse_points(data.get("background"), "background", size_hw)
    if not fg and not bg:
        return {}
    return {"points": fg + bg, "point_labels": [1] * len(fg) + [0] * len(bg)}
