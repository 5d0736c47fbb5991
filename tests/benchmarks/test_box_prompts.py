"""``benchmarks/box_prompts.py``: the user-box decoder against LiteMedSAM's, paired image by image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from radvlsm.data.busbra import read_busbra
from radvlsm.engine.bundle import save_model

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))  # box_prompts imports its sibling scripts
import box_prompts

TINY_NETWORK = {"variant": "tiny", "text_encoder": "tiny", "embed_dim": 32}  # as tests/conftest.py


@pytest.fixture()
def split_file(phantom_dir: Path, tmp_path: Path) -> str:
    ids = [item["id"] for item in read_busbra(phantom_dir, validate=False).items]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"training": [], "validation": [], "test": ids[:4]}))
    return str(path)


def _weights(tiny_model, tmp_path: Path, tune: bool) -> str:
    model = tiny_model(radiomics=False)
    if tune:  # what the box stage would keep: different weights in the user-box copy
        with torch.no_grad():
            for p in model.box_decoder.parameters():
                p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(1)))
    return save_model(model, str(tmp_path / f"model_{tune}.pt"))


def test_untuned_copy_is_litemedsam_on_every_image(phantom_dir, split_file, tiny_model, tmp_path) -> None:
    path = _weights(tiny_model, tmp_path, tune=False)
    out = box_prompts.run(str(phantom_dir), split_file, path, **TINY_NETWORK, radiomics=False)
    assert out["box_decoder"] == "litemedsam" and out["n_images"] == 4
    assert out["difference"] == 0.0 and out["ci95"] == [0.0, 0.0] and out["model"] == out["litemedsam"]
    assert sum(s["n_images"] for s in out["per_scanner"].values()) == 4


def test_tuned_copy_is_compared_with_litemedsam(phantom_dir, split_file, tiny_model, tmp_path) -> None:
    path = _weights(tiny_model, tmp_path, tune=True)
    out = box_prompts.run(str(phantom_dir), split_file, path, **TINY_NETWORK, radiomics=False)
    assert out["box_decoder"] == "tuned" and out["n_images"] == 4
    assert out["difference"] == pytest.approx(out["model"] - out["litemedsam"], abs=1e-9)
    assert out["ci95"][0] <= out["difference"] <= out["ci95"][1]
    assert out["model"] != out["litemedsam"]
    rows = out["correction_click"]
    assert set(rows) == {"user_box_decoder", "candidate_decoder", "litemedsam"}
    assert rows["user_box_decoder"]["box_alone"] == pytest.approx(out["model"])  # same decoder, same box
    assert rows["litemedsam"]["box_alone"] == pytest.approx(out["litemedsam"])
    for row in rows.values():
        assert row["n_images"] == 4 and 0.0 <= row["share_worse"] <= 1.0
        assert row["difference"] == pytest.approx(row["box_and_click"] - row["box_alone"], abs=1e-9)
