"""The shipped ``models/model.pt``: small, fits the bundle's network exactly, and segments a phantom lesion.

It was trained on real breast ultrasound (BUS-BRA, see the bundle's docs/README.md); here it meets only the
synthetic phantom, so the checks are loose sanity bounds, not the reported figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radvlsm.models.build import load_trained_weights

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"
MODEL = BUNDLE / "models" / "model.pt"


def _bundle_network():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    return parser.get_parsed_content("network_def")


def test_shipped_weights_are_small_and_leave_out_the_pretrained_towers() -> None:
    import torch

    assert MODEL.is_file(), "bundles/radvlsm_breast_us/models/model.pt is missing"
    assert MODEL.stat().st_size < 15e6
    state = torch.load(MODEL, map_location="cpu", weights_only=True)
    assert not any(k.startswith(("text_encoder.", "image_encoder.")) for k in state)
    assert any(k.startswith("mask_decoder.") for k in state) and any(k.startswith("fusion.") for k in state)
    record = json.loads(MODEL.with_suffix(".json").read_text())
    assert 0.0 < record["best_val_dice"] <= 1.0


@pytest.mark.slow
def test_shipped_model_segments_a_phantom_lesion(phantom_dir) -> None:
    model = load_trained_weights(_bundle_network(), MODEL).eval()  # refuses missing or unexpected keys
    image_path = sorted((phantom_dir / "Images").glob("*.png"))[0]
    image = np.asarray(Image.open(image_path))
    truth = np.asarray(Image.open(phantom_dir / "Masks" / image_path.name.replace("bus_", "mask_"))) > 0
    ys, xs = np.nonzero(truth)
    result = model.predict(image, box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    dice = 2 * (result.mask.astype(bool) & truth).sum() / (result.mask.sum() + truth.sum())
    assert dice > 0.7, dice
    auto = model.predict(image)
    assert auto.mask.shape == truth.shape and 0.0 <= auto.malignancy_probability <= 1.0
    assert auto.radiomics, "the shipped model carries the radiomics fusion"


@pytest.mark.slow
def test_shipped_model_recognises_a_prompted_region(phantom_dir) -> None:
    """The shipped weights carry a trained region prompt path (non-zero), and a box, a click and a mask of the
    same lesion all give a region diagnosis with zero-shot findings."""
    model = load_trained_weights(_bundle_network(), MODEL).eval()
    assert float(model.region_prompt.to_features.weight.abs().sum()) > 0, "the region prompt path is untrained"
    image_path = sorted((phantom_dir / "Images").glob("*.png"))[0]
    image = np.asarray(Image.open(image_path))
    truth = np.asarray(Image.open(phantom_dir / "Masks" / image_path.name.replace("bus_", "mask_"))) > 0
    ys, xs = np.nonzero(truth)
    prompts = (
        {"box": [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]},
        {"points": [[float(xs.mean()), float(ys.mean())]]},
        {"mask": truth.astype(np.uint8)},
    )
    for kwargs in prompts:
        result = model.predict_region(image, **kwargs)
        assert result.region_prompt_trained and 0.0 <= result.malignancy_probability <= 1.0
        assert abs(sum(result.descriptors["margin"].values()) - 1) < 1e-4
