"""Integration test on the real BUS-BRA development data (skips when it is absent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from monai.data import list_data_collate

from radvlsm.data.busbra import read_busbra
from radvlsm.data.splits import split_by_case
from radvlsm.data.transforms import get_transforms, invert_to_original

pytestmark = pytest.mark.realdata


def test_reads_every_real_image(busbra_dir: Path) -> None:
    start = time.perf_counter()
    report = read_busbra(busbra_dir)
    elapsed = time.perf_counter() - start
    assert not report.skipped, report.summary()
    assert len(report.items) == 1511
    assert report.class_counts() == {"benign": 1023, "malignant": 488}
    assert len({it["case"] for it in report.items}) == 852
    assert all(it["bbox"] is not None and it["birads"] in (2, 3, 4, 5) for it in report.items)
    assert elapsed < 60, f"read_busbra took {elapsed:.1f} s"

    splits = split_by_case(report.items, seed=0)
    cases = [{it["case"] for it in part} for part in splits.values()]
    assert not (cases[0] & cases[1] or cases[0] & cases[2] or cases[1] & cases[2])

    transform = get_transforms("eval")
    outputs = [transform(dict(item)) for item in report.items[::300]]
    batch = list_data_collate(outputs)
    assert batch["image"].shape == (len(outputs), 1, 256, 256)
    for out, item in zip(outputs, report.items[::300], strict=True):
        h, w = out["original_size"].tolist()
        x, y, bw, bh = item["bbox"]
        assert y + bh <= h and x + bw <= w
        back = invert_to_original(out["label"], out["original_size"])
        assert back.shape == (1, h, w)
        ys, xs = torch.nonzero(back[0], as_tuple=True)
        assert abs(xs.min().item() - x) <= 3 and abs(ys.min().item() - y) <= 3
