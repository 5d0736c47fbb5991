"""``benchmarks/crop_probe.py``: lesion-centred crops of the predicted mask and probes on their embeddings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from radvlsm.data.busbra import read_busbra
from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.engine.bundle import save_model

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))  # crop_probe imports its sibling scripts
import crop_probe

BUNDLE = str(Path(__file__).parents[2] / "bundles" / "radvlsm_breast_us")
TINY = {"network_def#variant": "tiny", "network_def#text_encoder": "tiny", "network_def#embed_dim": 32}


def test_crop_box_grows_by_the_margin_and_stays_inside() -> None:
    mask = np.zeros((100, 80), bool)
    mask[40:60, 30:46] = True  # 20 x 16 box
    assert crop_probe.crop_box(mask, 0.0) == (40, 60, 30, 46)
    assert crop_probe.crop_box(mask, 0.5) == (30, 70, 20, 56)  # 0.5 x the longest side (20) on each side
    assert crop_probe.crop_box(mask, 10.0) == (0, 100, 0, 80)  # clipped to the image
    assert crop_probe.crop_box(np.zeros((100, 80), bool), 0.5) is None  # nothing predicted
    speck = np.zeros((100, 80), bool)
    speck[5, 5] = True
    assert crop_probe.crop_box(speck, 1.0) is None  # too small to encode


def test_pooled_reads_content_cells_and_the_mask() -> None:
    geometry = LongestSideGeometry((64, 32), 64)  # content: the left half of the frame
    features = torch.zeros(1, 2, 4, 4)
    features[0, 0, :, :2] = 1.0  # channel 0 is 1 on the content cells
    features[0, 1, 0, 0] = 8.0  # channel 1 is 8 on the top-left cell only
    mask = np.zeros((64, 32), bool)
    mask[:16, :16] = True  # exactly the top-left cell
    out = crop_probe.pooled(features, geometry, mask)
    assert out.shape == (4,)
    assert torch.allclose(out[:2], torch.tensor([1.0, 1.0]))  # content mean: padding cells left out
    assert torch.allclose(out[2:], torch.tensor([1.0, 8.0]))  # the mask's own cell
    assert torch.allclose(crop_probe.pooled(features, geometry, np.zeros((64, 32), bool))[2:], out[:2])


@pytest.mark.slow
def test_probe_runs_on_the_bundle_splits(phantom_dir: Path, tiny_model, tmp_path: Path) -> None:
    items = read_busbra(phantom_dir, validate=False).items
    validation = ["bus_0002-l", "bus_0002-r", "bus_0004-l", "bus_0004-r"]  # two benign, two malignant
    training = [item["id"] for item in items if item["id"] not in validation]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"training": training, "validation": validation, "test": []}))
    model_path = save_model(tiny_model(), str(tmp_path / "model.pt"))
    overrides = {**TINY, "dataset_dir": str(phantom_dir), "split_file": str(split), "output_dir": str(tmp_path / "run")}
    out = crop_probe.run(BUNDLE, model_path, overrides, margins=(0.5,), l2_grid=(0.1,), late_weights=(0.3,))
    assert out["n_train"] == 8 and out["n_validation"] == 4
    names = set(out["rows"])
    assert {"shipped_visual", "shipped_fused", "logistic_visual+radiomics_l2_0.1", "logistic_crop0.5_l2_0.1"} <= names
    assert {"logistic_crop0.5+visual+radiomics_l2_0.1", "late_crop0.5_w0.3"} <= names
    assert out["rows"]["shipped_fused"]["difference_to_shipped_fused"]["mean"] == 0.0
    for row in out["rows"].values():
        assert 0.0 <= row["validation_auc"]["mean"] <= 1.0 and 0.0 <= row["train_auc"] <= 1.0
