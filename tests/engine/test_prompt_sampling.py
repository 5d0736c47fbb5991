"""``radvlsm.engine.prompt_sampling``: correction clicks simulated from a mask's errors."""

from __future__ import annotations

import numpy as np
import torch

from radvlsm.engine.prompt_sampling import correction_click, correction_clicks


def _square() -> np.ndarray:
    truth = np.zeros((40, 60), bool)
    truth[10:30, 10:30] = True
    return truth


def test_correction_click_goes_to_the_largest_error() -> None:
    truth = _square()
    assert correction_click(truth, truth) is None
    missed = truth.copy()
    missed[10:30, 20:30] = False  # the right half missed: a foreground click inside it
    (x, y), label = correction_click(missed, truth)
    assert label == 1 and 20 <= x < 30 and 10 <= y < 30
    leaked = truth.copy()
    leaked[10:30, 40:58] = True  # a leak larger than a small miss elsewhere: a background click in the leak
    leaked[10:12, 10:12] = False
    (x, y), label = correction_click(leaked, truth)
    assert label == 0 and 40 <= x < 58 and 10 <= y < 30


def test_correction_clicks_batch_marks_the_masks_already_right() -> None:
    truth = _square()
    leaked = truth.copy()
    leaked[10:30, 40:58] = True
    masks = torch.from_numpy(np.stack([truth, leaked])[:, None]).float()
    labels = torch.from_numpy(np.stack([truth, truth])[:, None]).float()
    points, point_labels, placed = correction_clicks(masks, labels)
    assert points.shape == (2, 1, 2) and point_labels.shape == (2, 1)
    assert placed.tolist() == [False, True]
    (x, y), label = correction_click(leaked, truth)
    torch.testing.assert_close(points[1, 0], torch.tensor([x, y]))
    assert int(point_labels[1, 0]) == label == 0
