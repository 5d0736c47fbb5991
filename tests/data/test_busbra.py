from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from radvlsm.data.busbra import parse_birads, read_busbra
from radvlsm.errors import DataValidationError


def test_reads_items(make_busbra: Callable[..., Path]) -> None:
    root = make_busbra()
    report = read_busbra(root)
    assert report.layout == "bus-bra" and not report.skipped
    assert report.class_counts() == {"benign": 2, "malignant": 2}
    first = report.items[0]
    assert first["image"] == str((root / "Images" / "bus_0001-l.png").resolve())
    assert first["label"] == str((root / "Masks" / "mask_0001-l.png").resolve())
    assert (first["id"], first["case"], first["pathology"], first["diagnosis"]) == ("bus_0001-l", "1", "benign", 0)
    assert first["birads"] == 3 and first["histology"] == "fibroadenoma" and first["device"] == "test probe"
    assert first["bbox"] == [10, 8, 20, 12]
    assert "benign breast lesion (fibroadenoma)" in first["text"]
    assert report.items[2]["diagnosis"] == 1


def test_missing_column(make_busbra: Callable[..., Path], helpers: SimpleNamespace) -> None:
    root = make_busbra(columns=tuple(c for c in helpers.COLUMNS if c != "Case"))
    with pytest.raises(DataValidationError, match=r"bus_data\.csv.*Case"):
        read_busbra(root)


def test_bad_items_are_skipped_and_counted(
    make_busbra: Callable[..., Path], helpers: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        ("bus_0001-l", "1", "benign", "3", (40, 60), (10, 8, 20, 12)),
        ("bus_0002-l", "2", "benign", "3", (40, 60), None),  # empty mask on a lesion image
        ("bus_0003-l", "3", "tumour", "3", (40, 60), (1, 1, 4, 4)),  # unknown pathology
        ("bus_0004-l", "4", "malignant", "x", (40, 60), (1, 1, 4, 4)),  # bad BI-RADS
        ("bus_0005-l", "5", "malignant", "5", (40, 60), (1, 1, 4, 4)),  # zero-byte image (below)
        ("bus_0006-l", "6", "malignant", "5", (40, 60), (1, 1, 4, 4)),  # missing mask (below)
        ("bus_0007-l", "7", "malignant", "5", (40, 60), (1, 1, 4, 4)),  # mask of another size (below)
    ]
    root = make_busbra(rows)
    (root / "Images" / "bus_0005-l.png").write_bytes(b"")
    (root / "Masks" / "mask_0006-l.png").unlink()
    helpers.save_png(np.zeros((41, 60)), root / "Masks" / "mask_0007-l.png")
    with caplog.at_level("WARNING"):
        report = read_busbra(root)
    assert [it["id"] for it in report.items] == ["bus_0001-l"]
    reasons = dict(report.skipped)
    assert len(reasons) == 6 and "skipped 6 of 7" in caplog.text
    assert "empty" in reasons["bus_0002-l"]
    assert "tumour" in reasons["bus_0003-l"]
    assert "BIRADS" in reasons["bus_0004-l"]
    assert "zero bytes" in reasons["bus_0005-l"]
    assert "not found" in reasons["bus_0006-l"]
    assert "41x60" in reasons["bus_0007-l"]
    assert "6 skipped" in report.summary()
    with pytest.raises(DataValidationError, match=r"mask_0002-l\.png.*empty"):
        read_busbra(root, strict=True)


def test_without_validation_still_has_bbox(make_busbra: Callable[..., Path]) -> None:
    report = read_busbra(make_busbra(), validate=False)
    assert [it["bbox"] for it in report.items][:2] == [[10, 8, 20, 12], [30, 20, 10, 10]]


def test_phantom_reads_clean(phantom_dir: Path) -> None:
    report = read_busbra(phantom_dir)
    assert len(report.items) == 12 and not report.skipped
    assert all(it["bbox"] is not None for it in report.items)


@pytest.mark.parametrize(("value", "expected"), [("4", 4), ("4a", 4), ("5.0", 5), ("", None), (None, None)])
def test_parse_birads(value: object, expected: int | None) -> None:
    assert parse_birads(value, "x") == expected


def test_parse_birads_rejects() -> None:
    with pytest.raises(DataValidationError, match="img1"):
        parse_birads("7", "img1")
