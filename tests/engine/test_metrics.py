"""Segmentation and diagnosis metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radvlsm.engine.metrics import diagnosis_metrics, segmentation_metrics


def square(size: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., y0:y1, x0:x1] = 1
    return m


def test_dice_iou_hd95_known_values() -> None:
    truth = square(32, 8, 20, 8, 20)
    pred = square(32, 8, 20, 8, 14)  # half the square
    out = segmentation_metrics(pred, truth)
    assert out["dice"][0] == pytest.approx(2 * 72 / (72 + 144))
    assert out["iou"][0] == pytest.approx(0.5)
    assert 5.0 <= out["hd95"][0] <= 6.0


def test_empty_masks_follow_conventions() -> None:
    empty = torch.zeros(1, 1, 16, 16)
    both = segmentation_metrics(empty, empty)
    assert both["dice"][0] == 1 and both["hd95"][0] == 0
    one = segmentation_metrics(empty, square(16, 2, 6, 2, 6))
    assert one["dice"][0] == 0 and one["hd95"][0] == pytest.approx(math.hypot(16, 16))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation_metrics(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 9, 9))


def test_diagnosis_metrics() -> None:
    out = diagnosis_metrics(np.array([0.1, 0.9, 0.8, 0.3]), np.array([0, 1, 0, 1]))
    assert out["auc"] == pytest.approx(0.75)
    assert out["accuracy"] == 0.5 and out["sensitivity"] == 0.5 and out["specificity"] == 0.5
    single = diagnosis_metrics(np.array([0.2, 0.7]), np.array([1, 1]))
    assert math.isnan(single["auc"]) and single["sensitivity"] == 0.5
