"""``benchmarks/loso.py compare``: held-out against in-distribution on the same test images."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("loso", Path(__file__).parents[2] / "benchmarks" / "loso.py")
loso = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(loso)


def _write(path: Path, rows: list[dict]) -> str:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_compare_pairs_the_same_test_images(tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"training": ["a"], "validation": ["b"], "test": ["c", "d"]}))
    held = _write(
        tmp_path / "held.csv",
        [
            {"id": i, "device": "S", "dice": d, "dice_box": 0.9}
            for i, d in (("a", 0.2), ("b", 0.4), ("c", 0.6), ("d", 0.8))
        ],
    )
    ref = _write(tmp_path / "ref.csv", [{"id": i, "device": "S", "dice": d} for i, d in (("c", 0.7), ("d", 1.0))])
    out = loso.compare(str(split), held, ref)
    assert out["all_held_out"]["n_images"] == 4
    assert out["all_held_out"]["dice"] == pytest.approx(0.5)
    same = out["same_test_images"]
    assert same["n_images"] == 2
    assert same["dice"]["held_out"] == pytest.approx(0.7)
    assert same["dice"]["in_distribution"] == pytest.approx(0.85)
    assert same["dice"]["difference"] == pytest.approx(-0.15)
    low, high = same["dice"]["difference_ci95"]
    assert -0.2 - 1e-9 <= low <= -0.15 <= high <= -0.1 + 1e-9
    assert "dice_box" not in same  # only columns both files hold are paired


def test_compare_rejects_a_file_without_ids(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", [{"name": "x", "dice": 1.0}])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"test": []}))
    with pytest.raises(ValueError, match="'id' column"):
        loso.compare(str(split), bad)
