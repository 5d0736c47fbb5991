from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from radvlsm.data.busi import read_busi
from radvlsm.errors import DataValidationError, RadVLSMInputError


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_multi_mask_merge_and_normal(busi_dir: Path, tmp_path: Path) -> None:
    before = _files(busi_dir)
    report = read_busi(busi_dir, merged_mask_dir=tmp_path / "merged")
    assert _files(busi_dir) == before  # nothing written into the dataset
    assert report.layout == "busi" and not report.skipped
    assert report.class_counts() == {"benign": 1, "malignant": 1, "normal": 1}
    by_id = {it["id"]: it for it in report.items}
    benign = by_id["benign (1)"]
    assert benign["case"] == "benign (1)" and benign["diagnosis"] == 0 and benign["birads"] is None
    merged = np.asarray(Image.open(benign["label"])) > 0
    assert Path(benign["label"]).is_relative_to(tmp_path / "merged")
    assert merged[3:8, 2:8].all() and merged[15:25, 25:35].all()  # both lesions (OR)
    assert merged.sum() == 6 * 5 + 10 * 10
    assert benign["bbox"] == [2, 3, 33, 22]
    normal = by_id["normal (1)"]
    assert normal["pathology"] == "normal" and normal["diagnosis"] == 0 and normal["bbox"] is None
    assert not np.asarray(Image.open(normal["label"])).any()
    assert by_id["malignant (1)"]["diagnosis"] == 1


def test_default_dir_is_temporary_and_normal_optional(busi_dir: Path) -> None:
    report = read_busi(busi_dir, include_normal=False)
    assert {it["pathology"] for it in report.items} == {"benign", "malignant"}
    assert not Path(report.items[0]["label"]).is_relative_to(busi_dir)


def test_refuses_to_write_into_dataset(busi_dir: Path) -> None:
    with pytest.raises(RadVLSMInputError, match="outside the dataset"):
        read_busi(busi_dir, merged_mask_dir=busi_dir / "merged")


def test_bad_images_skipped(busi_dir: Path, tmp_path: Path, helpers: SimpleNamespace) -> None:
    helpers.save_png(np.zeros((30, 40)), busi_dir / "benign" / "benign (2).png")  # no mask
    helpers.save_png(np.zeros((10, 10)), busi_dir / "malignant" / "malignant (1)_mask_1.png")  # wrong size
    helpers.save_png(np.zeros((5, 5)), busi_dir / "malignant" / "malignant (3)_mask.png")  # no image
    report = read_busi(busi_dir, merged_mask_dir=tmp_path / "m")
    reasons = dict(report.skipped)
    assert set(reasons) == {"benign/benign (2)", "malignant/malignant (1)", "malignant/malignant (3)"}
    assert "no benign (2)_mask.png" in reasons["benign/benign (2)"]
    assert "10x10" in reasons["malignant/malignant (1)"]
    assert "without an image" in reasons["malignant/malignant (3)"]
    with pytest.raises(DataValidationError):
        read_busi(busi_dir, merged_mask_dir=tmp_path / "m", strict=True)


def test_needs_class_folders(tmp_path: Path) -> None:
    (tmp_path / "benign").mkdir()
    with pytest.raises(DataValidationError, match="malignant/"):
        read_busi(tmp_path)
