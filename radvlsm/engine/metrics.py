"""Segmentation and diagnosis metrics, computed with MONAI's metric functions.

Per-image values are returned so evaluation can write them per image and summarise them; empty
predictions and empty truths follow MONAI's conventions, with HD95 of an empty prediction set to the
image diagonal (a finite worst case) rather than ``inf``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou, compute_roc_auc


def _as_batch(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).float()
    while t.ndim < 4:
        t = t[None]
    return (t > 0.5).float()


def segmentation_metrics(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """Dice, IoU and HD95 per image.

    Args:
        pred: ``(B, 1, H, W)`` (or ``(H, W)``) binary or probability mask; thresholded at 0.5.
        truth: same shape, binary.

    Returns:
        ``{"dice": (B,), "iou": (B,), "hd95": (B,)}``. Dice and IoU are 1 when both masks are empty;
        HD95 is in pixels, 0 when both are empty, the image diagonal when only one is.
    """
    p, t = _as_batch(pred), _as_batch(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    dice = compute_dice(p, t, include_background=True, ignore_empty=False)[:, 0]
    iou = compute_iou(p, t, include_background=True, ignore_empty=False)[:, 0]
    diag = math.hypot(*p.shape[-2:])
    hd = []
    for i in range(p.shape[0]):
        pe, te = bool(p[i].sum() == 0), bool(t[i].sum() == 0)
        if pe and te:
            hd.append(0.0)
        elif pe or te:
            hd.append(diag)
        else:
            value = float(
                compute_hausdorff_distance(p[i : i + 1], t[i : i + 1], include_background=True, percentile=95)
            )
            hd.append(value if math.isfinite(value) else diag)
    return {"dice": dice.numpy(), "iou": iou.numpy(), "hd95": np.asarray(hd, dtype=np.float64)}


def diagnosis_metrics(prob_malignant: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, accuracy, sensitivity and specificity of malignancy probabilities.

    Args:
        prob_malignant: ``(N,)`` predicted probability of malignancy.
        labels: ``(N,)`` 0 benign, 1 malignant.
        threshold: decision threshold for accuracy, sensitivity and specificity.

    Returns:
        ``auc`` (NaN when only one class is present), ``accuracy``, ``sensitivity``, ``specificity``, ``n``.
    """
    prob = np.asarray(prob_malignant, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if prob.shape != y.shape:
        raise ValueError(f"{prob.shape[0]} probabilities for {y.shape[0]} labels")
    pred = prob >= threshold
    pos, neg = y == 1, y == 0
    auc = float("nan")
    if pos.any() and neg.any():
        auc = float(compute_roc_auc(torch.as_tensor(prob), torch.as_tensor(y)))
    return {
        "auc": auc,
        "accuracy": float((pred == pos).mean()) if y.size else float("nan"),
        "sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
        "specificity": float((~pred[neg]).mean()) if neg.any() else float("nan"),
        "n": int(y.size),
    }
