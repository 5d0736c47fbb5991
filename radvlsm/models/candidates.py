"""Automatic candidate prompts: K boxes and points from the lesion response map (CAM).

For each threshold the map is split into connected components (``scipy.ndimage.label``, 8-connectivity);
each large enough component gives a box (with a small margin), positive point(s) at its CAM peak and negative
point(s) at the lowest CAM in a ring around the box. A box around the global peak region (the component of
``cam >= peak / 2`` holding the peak) is always added, so there is at least one candidate. Candidates are
ranked by CAM strength (mean inside the box minus mean outside) and deduplicated by box IoU; then separate
regions come first (a candidate that does not overlap any better one, so each of several lesions gets its own
candidate), the nested or merged variants after them. The list is padded to exactly K with invalid copies.

Coordinates are pixels of the model frame: boxes ``x1, y1, x2, y2`` (inclusive-exclusive, integers stored as
float), points ``x, y`` at pixel indices (SAM's prompt encoder adds the half-pixel shift itself).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from scipy import ndimage

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_GLOBAL_PEAK_FRACTION = 0.5  # the global peak region is the component of cam >= this fraction of the peak
_NEG_RING_FRACTION = 0.5  # the negative-point ring extends this fraction of the box size beyond the box
_NEG_RING_MIN = 4  # ... and at least this many pixels
_DIVERSITY_OVERLAP = 0.5  # a candidate covering more than this fraction of a better one's box is a variant of it


@dataclass
class CandidatePrompts:
    """K candidate prompts per image.

    Args:
        boxes: ``(B, K, 4)`` float ``x1, y1, x2, y2``.
        points: ``(B, K, P, 2)`` float ``x, y``.
        point_labels: ``(B, K, P)`` long: 1 foreground, 0 background, -1 padding.
        valid: ``(B, K)`` bool; invalid entries are padding (copies of the best candidate).
        cam_strength: ``(B, K)`` float, mean CAM inside the box minus mean outside.
    """

    boxes: torch.Tensor
    points: torch.Tensor
    point_labels: torch.Tensor
    valid: torch.Tensor
    cam_strength: torch.Tensor

    def to(self, device: torch.device | str) -> CandidatePrompts:
        """A copy with every tensor on ``device``."""
        return CandidatePrompts(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def append_masks(self, mask_logits: torch.Tensor, cam: torch.Tensor) -> CandidatePrompts:
        """These candidates followed by ``L`` mask-only candidates (learned prompts), described by their masks.

        Each mask's box is its foreground's bounding box (the whole frame when empty) and its point the peak
        logit; it is always valid.

        Args:
            mask_logits: ``(B, L, 1, S, S)``.
            cam: ``(B, 1, S, S)`` response map (for the CAM strength of the new boxes).
        """
        b, n = mask_logits.shape[:2]
        s = mask_logits.shape[-1]
        boxes = boxes_from_masks((mask_logits.flatten(0, 1) > 0).float()).view(b, n, 4)
        peak = mask_logits[:, :, 0].flatten(2).argmax(-1)
        p = self.points.shape[2]
        points = torch.zeros(b, n, p, 2, device=mask_logits.device)
        points[:, :, 0, 0], points[:, :, 0, 1] = (peak % s).float(), torch.div(peak, s, rounding_mode="floor").float()
        labels = torch.full((b, n, p), -1, dtype=torch.long, device=mask_logits.device)
        labels[:, :, 0] = 1
        return CandidatePrompts(
            boxes=torch.cat([self.boxes, boxes.to(self.boxes)], 1),
            points=torch.cat([self.points, points.to(self.points)], 1),
            point_labels=torch.cat([self.point_labels, labels], 1),
            valid=torch.cat([self.valid, torch.ones(b, n, dtype=torch.bool, device=self.valid.device)], 1),
            cam_strength=torch.cat([self.cam_strength, cam_strength(cam.detach().float(), boxes.to(cam.device))], 1),
        )


def cam_strength(cam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean CAM inside each box minus the mean outside it (pixel ``i`` is inside when ``x1 <= i + 0.5 < x2``).

    Args:
        cam: ``(B, 1, H, W)`` response map.
        boxes: ``(B, K, 4)`` ``x1, y1, x2, y2`` in pixels.

    Returns:
        ``(B, K)``; a box covering the whole frame has outside mean 0, an empty box inside mean 0.
    """
    if cam.ndim != 4 or cam.shape[1] != 1:
        raise RadVLSMInputError(f"expected (B, 1, H, W), got {tuple(cam.shape)}", "cam")
    if boxes.ndim != 3 or boxes.shape[0] != cam.shape[0] or boxes.shape[-1] != 4:
        raise RadVLSMInputError(f"expected ({cam.shape[0]}, K, 4), got {tuple(boxes.shape)}", "boxes")
    h, w = cam.shape[-2:]
    boxes = boxes.to(cam.dtype)
    xs = torch.arange(w, device=cam.device, dtype=cam.dtype) + 0.5
    ys = torch.arange(h, device=cam.device, dtype=cam.dtype) + 0.5
    in_x = ((xs >= boxes[..., 0:1]) & (xs < boxes[..., 2:3])).to(cam.dtype)  # (B, K, W)
    in_y = ((ys >= boxes[..., 1:2]) & (ys < boxes[..., 3:4])).to(cam.dtype)  # (B, K, H)
    inside = (torch.bmm(in_y, cam[:, 0]) * in_x).sum(-1)
    area = in_y.sum(-1) * in_x.sum(-1)
    total = cam.flatten(1).sum(-1, keepdim=True)
    mean_in = inside / area.clamp(min=1)
    mean_out = (total - inside) / (h * w - area).clamp(min=1)
    return mean_in - mean_out


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight ``x1, y1, x2, y2`` boxes of ``(B, 1, H, W)`` masks (foreground ``> 0.5``) -> ``(B, 4)``; the whole
    frame when a mask is empty."""
    h, w = masks.shape[-2:]
    fg = masks[:, 0] > 0.5
    rows, cols = fg.any(-1), fg.any(-2)  # (B, H), (B, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, h).min(-1).values
    y2 = torch.where(rows, ys + 1, 0).max(-1).values
    x1 = torch.where(cols, xs, w).min(-1).values
    x2 = torch.where(cols, xs + 1, 0).max(-1).values
    boxes = torch.stack([x1, y1, x2, y2], -1).float()
    whole = torch.tensor([0.0, 0.0, float(w), float(h)], device=masks.device)
    return torch.where(rows.any(-1, keepdim=True), boxes, whole)


def lesion_box_at(mask_prob: torch.Tensor, point: torch.Tensor) -> torch.Tensor | None:
    """The box ``[x1, y1, x2, y2]`` ``(4,)`` of the 8-connected lesion of ``mask_prob > 0.5`` under ``point``.

    Args:
        mask_prob: ``(S, S)`` probability or binary mask; point: ``(2,)`` ``(x, y)`` in the same frame (clamped
            to it).

    Returns:
        the lesion's box (float, exclusive ends, on ``point``'s device), or None when the point is on no lesion.
    """
    labels, _ = ndimage.label((mask_prob > 0.5).cpu().numpy(), structure=np.ones((3, 3), dtype=bool))
    x = min(max(int(point[0]), 0), labels.shape[1] - 1)
    y = min(max(int(point[1]), 0), labels.shape[0] - 1)
    if labels[y, x] == 0:
        return None
    sy, sx = ndimage.find_objects(labels)[labels[y, x] - 1]
    return torch.tensor([sx.start, sy.start, sx.stop, sy.stop], dtype=torch.float32, device=point.device)


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` boxes -> ``(N, N)``."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of boxes kept by greedy non-maximum suppression, best score first.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; iou_threshold: a box overlapping a kept one by more is dropped.

    Returns:
        ``(M,)`` int indices into ``boxes``.
    """
    order = np.argsort(-scores, kind="stable")
    iou = box_iou_matrix(boxes)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def _farthest_points(coords: np.ndarray, first: int, n: int) -> list[int]:
    """Farthest-point sampling of ``n`` rows of ``coords`` ``(M, 2)`` starting at row ``first``."""
    chosen = [first]
    dist = np.full(len(coords), np.inf)
    while len(chosen) < min(n, len(coords)):
        dist = np.minimum(dist, ((coords - coords[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(np.argmax(dist)))
    return chosen


@dataclass
class _Region:
    """One connected region of the map: its box (no margin), labels array and label, and its peak (y, x)."""

    y0: int
    x0: int
    y1: int
    x1: int
    labels: np.ndarray
    label: int
    peak: tuple[int, int]


class CandidateGenerator:
    """Candidate box and point prompts from a response map.

    Args:
        k: number of candidates K per image (output is padded to exactly K).
        thresholds: CAM thresholds for connected components.
        n_pos: positive points per candidate (the first at the component's CAM peak).
        n_neg: negative points per candidate (low CAM just outside the box); missing ones are padding (-1).
        min_area_frac: components smaller than this fraction of the frame are ignored.
        box_margin: margin added on each side, as a fraction of the component's width/height (at least 1 px).
        iou_dedup: a candidate whose box IoU with a better one exceeds this is dropped.
    """

    def __init__(
        self,
        k: int = 6,
        thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        n_pos: int = 1,
        n_neg: int = 1,
        min_area_frac: float = 0.002,
        box_margin: float = 0.05,
        iou_dedup: float = 0.7,
    ) -> None:
        if k < 1:
            raise RadVLSMInputError(f"must be >= 1, got {k}", "k")
        if not thresholds or any(not 0.0 <= t < 1.0 for t in thresholds):
            raise RadVLSMInputError(f"need one or more values in [0, 1), got {tuple(thresholds)}", "thresholds")
        if n_pos < 1 or n_neg < 0:
            raise RadVLSMInputError(f"need n_pos >= 1 and n_neg >= 0, got {n_pos} and {n_neg}", "n_pos/n_neg")
        if not 0.0 <= min_area_frac < 1.0 or box_margin < 0 or not 0.0 < iou_dedup <= 1.0:
            raise RadVLSMInputError(
                f"need 0 <= min_area_frac < 1, box_margin >= 0, 0 < iou_dedup <= 1; got {min_area_frac}, "
                f"{box_margin}, {iou_dedup}",
                "CandidateGenerator",
            )
        self.k = k
        self.thresholds = tuple(sorted(float(t) for t in thresholds))
        self.n_pos = n_pos
        self.n_neg = n_neg
        self.min_area_frac = min_area_frac
        self.box_margin = box_margin
        self.iou_dedup = iou_dedup

    def __call__(self, cam: torch.Tensor) -> CandidatePrompts:
        """Generate candidates.

        Args:
            cam: ``(B, 1, H, W)`` response map in ``[0, 1]`` (``H = W = S`` in the model frame).

        Returns:
            :class:`CandidatePrompts` with K candidates per image on ``cam``'s device; the first is always valid.
        """
        if cam.ndim != 4 or cam.shape[1] != 1 or min(cam.shape[-2:]) < 2:
            raise RadVLSMInputError(f"expected (B, 1, H, W) with H, W >= 2, got {tuple(cam.shape)}", "cam")
        arr = cam.detach().float().cpu().numpy()[:, 0]
        if not np.isfinite(arr).all() or arr.min() < -1e-4 or arr.max() > 1 + 1e-4:
            raise RadVLSMInputError("must be finite and in [0, 1]", "cam")
        p = self.n_pos + self.n_neg
        b = arr.shape[0]
        boxes = np.zeros((b, self.k, 4), np.float32)
        points = np.zeros((b, self.k, p, 2), np.float32)
        labels = np.full((b, self.k, p), -1, np.int64)
        valid = np.zeros((b, self.k), bool)
        for i in range(b):
            regions = self._regions(np.clip(arr[i], 0.0, 1.0))
            chosen = self._select(arr[i], regions)
            for j, region in enumerate(chosen):
                boxes[i, j] = self._box(region, arr[i].shape)
                points[i, j], labels[i, j] = self._points(arr[i], region, boxes[i, j])
            valid[i, : len(chosen)] = True
            boxes[i, len(chosen) :] = boxes[i, 0]
            points[i, len(chosen) :] = points[i, 0]
            labels[i, len(chosen) :] = labels[i, 0]
        out_boxes = torch.from_numpy(boxes).to(cam.device)
        return CandidatePrompts(
            boxes=out_boxes,
            points=torch.from_numpy(points).to(cam.device),
            point_labels=torch.from_numpy(labels).to(cam.device),
            valid=torch.from_numpy(valid).to(cam.device),
            cam_strength=cam_strength(cam.detach().float(), out_boxes),
        )

    # ------------------------------------------------------------------ steps
    def _regions(self, cam: np.ndarray) -> list[_Region]:
        """Connected components above each threshold, plus the global peak region (always last)."""
        h, w = cam.shape
        min_area = max(1.0, self.min_area_frac * h * w)
        regions: list[_Region] = []
        for t in self.thresholds:
            lab, n = ndimage.label(cam > t, structure=_EIGHT_CONNECTED)
            if n == 0:
                continue
            keep = np.nonzero(np.bincount(lab.ravel(), minlength=n + 1)[1:] >= min_area)[0] + 1
            if keep.size == 0:
                continue
            slices = ndimage.find_objects(lab)
            for label in keep.tolist():
                sy, sx = slices[label - 1]
                crop = np.where(lab[sy, sx] == label, cam[sy, sx], -1.0)
                py, px = np.unravel_index(int(np.argmax(crop)), crop.shape)
                regions.append(
                    _Region(sy.start, sx.start, sy.stop, sx.stop, lab, label, (py + sy.start, px + sx.start))
                )
        peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
        if cam.max() - cam.min() < 1e-6:  # flat map: the whole frame, positive point at the centre
            regions.append(_Region(0, 0, h, w, np.ones((h, w), np.int32), 1, (h // 2, w // 2)))
        else:
            lab, _ = ndimage.label(cam >= _GLOBAL_PEAK_FRACTION * cam[peak], structure=_EIGHT_CONNECTED)
            sy, sx = ndimage.find_objects(lab == lab[peak])[0]
            regions.append(_Region(sy.start, sx.start, sy.stop, sx.stop, lab, int(lab[peak]), tuple(map(int, peak))))
        return regions

    def _box(self, r: _Region, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        mx = max(1, round(self.box_margin * (r.x1 - r.x0)))
        my = max(1, round(self.box_margin * (r.y1 - r.y0)))
        return np.asarray([max(0, r.x0 - mx), max(0, r.y0 - my), min(w, r.x1 + mx), min(h, r.y1 + my)], np.float32)

    def _select(self, cam: np.ndarray, regions: list[_Region]) -> list[_Region]:
        """Rank by CAM strength, dedup by IoU, separate regions first; at most K."""
        boxes = np.stack([self._box(r, cam.shape) for r in regions]).astype(np.float64)
        strength = _box_strength(cam, boxes)
        kept = greedy_nms(boxes, strength, self.iou_dedup)  # best first
        first, later = [], []
        for i in kept:
            covered = any(_overlap_fraction(boxes[i], boxes[j]) > _DIVERSITY_OVERLAP for j in first)
            (later if covered else first).append(i)
        order = (first + later)[: self.k]
        logger.debug("%d regions, %d after dedup, %d separate", len(regions), len(kept), len(first))
        return [regions[i] for i in order]

    def _points(self, cam: np.ndarray, r: _Region, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive points at the region's CAM peak (then spread over its strong half), negatives in a ring."""
        p = self.n_pos + self.n_neg
        pts = np.zeros((p, 2), np.float32)
        lbl = np.full((p,), -1, np.int64)
        # positives: inside the region
        crop = r.labels[r.y0 : r.y1, r.x0 : r.x1] == r.label
        ys, xs = np.nonzero(crop)
        vals = cam[r.y0 : r.y1, r.x0 : r.x1][crop]
        coords = np.stack([ys + r.y0, xs + r.x0], axis=1)
        strong = vals >= np.median(vals)
        coords = coords[strong]
        peak_idx = int(np.argmin(((coords - np.asarray(r.peak)) ** 2).sum(-1)))
        for n, c in enumerate(_farthest_points(coords, peak_idx, self.n_pos)):
            pts[n] = (coords[c, 1], coords[c, 0])
            lbl[n] = 1
        if self.n_neg == 0:
            return pts, lbl
        # negatives: lowest CAM in a ring around the box
        h, w = cam.shape
        x1, y1, x2, y2 = (int(v) for v in box)
        rx = max(_NEG_RING_MIN, round(_NEG_RING_FRACTION * (x2 - x1)))
        ry = max(_NEG_RING_MIN, round(_NEG_RING_FRACTION * (y2 - y1)))
        ox1, oy1, ox2, oy2 = max(0, x1 - rx), max(0, y1 - ry), min(w, x2 + rx), min(h, y2 + ry)
        ring = np.ones((oy2 - oy1, ox2 - ox1), bool)
        ring[y1 - oy1 : y2 - oy1, x1 - ox1 : x2 - ox1] = False
        if not ring.any():
            return pts, lbl
        ys, xs = np.nonzero(ring)
        vals = cam[oy1:oy2, ox1:ox2][ring]
        coords = np.stack([ys + oy1, xs + ox1], axis=1)
        weak = vals <= np.median(vals)
        coords, vals = coords[weak], vals[weak]
        for n, c in enumerate(_farthest_points(coords, int(np.argmin(vals)), self.n_neg)):
            pts[self.n_pos + n] = (coords[c, 1], coords[c, 0])
            lbl[self.n_pos + n] = 0
        return pts, lbl


def _box_strength(cam: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Integral-image version of :func:`cam_strength` for ``(N, 4)`` integer-valued boxes on one ``(H, W)`` map."""
    h, w = cam.shape
    integral = np.zeros((h + 1, w + 1), np.float64)
    integral[1:, 1:] = cam.cumsum(0).cumsum(1)
    x1, y1, x2, y2 = (boxes[:, i].astype(np.int64) for i in range(4))
    inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    area = (x2 - x1) * (y2 - y1)
    outside_area = h * w - area
    mean_out = np.where(outside_area > 0, (integral[-1, -1] - inside) / np.maximum(outside_area, 1), 0.0)
    return inside / np.maximum(area, 1) - mean_out


def _overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(smaller, 1e-9))
