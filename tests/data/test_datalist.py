from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from radvlsm.data.busbra import read_busbra
from radvlsm.data.datalist import load_dataset, read_datalist_json, write_datalist_json
from radvlsm.errors import DataValidationError, RadVLSMInputError


def _datalist(tmp_path: Path, helpers: SimpleNamespace) -> Path:
    for name, box in (("a", (2, 2, 5, 5)), ("b", (4, 4, 6, 3))):
        image, mask = helpers.lesion_pair(16, 24, box)
        helpers.save_png(image, tmp_path / "img" / f"{name}.png")
        helpers.save_png(mask, tmp_path / "lab" / f"{name}.png")
    data = {
        "training": [
            {"image": "img/a.png", "label": "lab/a.png", "pathology": "benign", "case": "p1", "birads": 3},
            {"image": "img/b.png", "label": "lab/b.png", "diagnosis": 1},
            {"image": "img/missing.png", "label": "lab/a.png", "pathology": "benign"},
        ],
        "test": [{"image": "img/b.png", "pathology": "malignant"}],
    }
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def test_read_datalist(tmp_path: Path, helpers: SimpleNamespace) -> None:
    report = read_datalist_json(_datalist(tmp_path, helpers))
    assert report.layout == "datalist"
    a, b = report.items
    assert a["image"] == str(tmp_path / "img" / "a.png") and a["label"] == str(tmp_path / "lab" / "a.png")
    assert (a["id"], a["case"], a["birads"], a["bbox"]) == ("a", "p1", 3, [2, 2, 5, 5])
    assert (b["id"], b["case"], b["pathology"], b["diagnosis"]) == ("b", "b", "malignant", 1)
    assert "malignant" in b["text"]
    assert len(report.skipped) == 1 and "not found" in report.skipped[0][1]
    test = read_datalist_json(tmp_path / "datalist.json", data_list_key="test")
    assert test.items[0]["bbox"] is None and "label" not in test.items[0]


def test_datalist_errors(tmp_path: Path, helpers: SimpleNamespace) -> None:
    path = _datalist(tmp_path, helpers)
    with pytest.raises(DataValidationError, match=r"datalist\.json.*'validation'"):
        read_datalist_json(path, data_list_key="validation")
    with pytest.raises(DataValidationError, match=r"missing\.png"):
        read_datalist_json(path, strict=True)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataValidationError, match=r"bad\.json.*not valid JSON"):
        read_datalist_json(bad)


def test_write_then_read_round_trip(make_busbra: Callable[..., Path], tmp_path: Path) -> None:
    report = read_busbra(make_busbra())
    out = write_datalist_json(tmp_path / "busbra" / "list.json", {"training": report.items})
    stored = json.loads(out.read_text())["training"][0]
    assert stored["image"] == "Images/bus_0001-l.png" and "bbox" not in stored
    again = read_datalist_json(out)
    keys = ("image", "label", "id", "case", "pathology", "diagnosis", "birads", "bbox", "text")
    assert [{k: it[k] for k in keys} for it in again.items] == [{k: it[k] for k in keys} for it in report.items]


def test_load_dataset_detects_layouts(
    make_busbra: Callable[..., Path], busi_dir: Path, tmp_path: Path, helpers: SimpleNamespace
) -> None:
    assert load_dataset(make_busbra()).layout == "bus-bra"
    assert load_dataset(busi_dir, merged_mask_dir=tmp_path / "m").layout == "busi"
    assert load_dataset(_datalist(tmp_path, helpers), validate=False).layout == "datalist"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RadVLSMInputError, match=r"empty.*BUS-BRA.*BUSI.*json"):
        load_dataset(empty)
    with pytest.raises(RadVLSMInputError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    helpers.save_png(np.zeros((2, 2)), tmp_path / "x.png")
    with pytest.raises(RadVLSMInputError, match="no known dataset layout"):
        load_dataset(tmp_path / "x.png")
