from __future__ import annotations

import pytest

from radvlsm.data.records import DatasetReport, collect_items
from radvlsm.errors import DataValidationError


def _item(i: int, pathology: str) -> dict:
    return {"id": f"im{i}", "case": f"c{i // 2}", "pathology": pathology}


def test_class_counts_and_summary() -> None:
    report = DatasetReport(
        items=[_item(0, "benign"), _item(1, "benign"), _item(2, "malignant")],
        skipped=[("im9", "mask is empty")],
        layout="bus-bra",
        root="/data",
    )
    assert report.class_counts() == {"benign": 2, "malignant": 1}
    text = report.summary()
    assert "3 images" in text and "2 cases" in text and "benign 2" in text
    assert "1 skipped" in text and "im9: mask is empty" in text


def test_collect_items_skips_or_raises() -> None:
    def build(i: int) -> dict:
        if i == 1:
            raise DataValidationError("broken", f"im{i}")
        return _item(i if i != 2 else 0, "benign")  # 2 duplicates 0's ID

    report = collect_items([(f"im{i}", i) for i in range(3)], build, DatasetReport(), strict=False)
    assert [it["id"] for it in report.items] == ["im0"]
    assert [name for name, _ in report.skipped] == ["im1", "im2"]
    assert "broken" in report.skipped[0][1] and "duplicate" in report.skipped[1][1]
    with pytest.raises(DataValidationError, match="broken"):
        collect_items([(f"im{i}", i) for i in range(3)], build, DatasetReport(), strict=True)
