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

from radvlsm.config import build_network
from radvlsm.models.weights import load_trained_weights
from radvlsm.predictor import RadVLSMPredictor

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"
MODEL = BUNDLE / "models" / "model.pt"


@pytest.fixture(scope="module")
def shipped():
    """The bundle's network with the shipped weights (which must fit it exactly: no missing or unexpected key)."""
    return load_trained_weights(build_network(BUNDLE), MODEL).eval()


def test_shipped_weights_are_small_and_leave_out_the_pretrained_towers() -> None:
    import torch

    assert MODEL.is_file(), "bundles/radvlsm_breast_us/models/model.pt is missing"
    assert MODEL.stat().st_size < 25e6  # two tuned decoder copies of about 8 MB each in float16, and the heads
    state = torch.load(MODEL, map_location="cpu", weights_only=True)
    # LiteMedSAM's own decoder (user masks) is installed, not shipped; the automatic path's and the user-box copies
    # are (the box copy only when it beat LiteMedSAM on validation: the record says which)
    assert not any(k.startswith(("text_encoder.", "image_encoder.", "mask_decoder.")) for k in state)
    assert any(k.startswith("auto_decoder.") for k in state) and any(k.startswith("fusion.") for k in state)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())  # no float16 overflow
    record = json.loads(MODEL.with_suffix(".json").read_text())
    assert 0.0 < record["best_val_dice"] <= 1.0
    assert any(k.startswith("box_decoder.") for k in state) == (record["box_decoder"] == "tuned")
    assert record["box_val_dice"] >= record["box_val_dice_litemedsam"]


@pytest.mark.slow
def test_shipped_model_segments_a_phantom_lesion(shipped, phantom_dir) -> None:
    image_path = sorted((phantom_dir / "Images").glob("*.png"))[0]
    image = np.asarray(Image.open(image_path))
    truth = np.asarray(Image.open(phantom_dir / "Masks" / image_path.name.replace("bus_", "mask_"))) > 0
    ys, xs = np.nonzero(truth)
    predictor = RadVLSMPredictor(shipped)
    predictor.set_image(image)
    result = predictor.predict(box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    dice = 2 * (result.mask.astype(bool) & truth).sum() / (result.mask.sum() + truth.sum())
    assert dice > 0.7, dice
    auto = predictor.predict()
    assert auto.mask.shape == truth.shape and 0.0 <= auto.malignancy_probability <= 1.0
    assert auto.radiomics, "the shipped model carries the radiomics fusion"


@pytest.mark.slow
def test_shipped_model_recognises_a_prompted_region(shipped, phantom_dir) -> None:
    """The shipped weights carry a trained region prompt path (non-zero), and a box, a click and a mask of the
    same lesion all give a region diagnosis with zero-shot findings."""
    assert shipped.region_prompt_trained, "the region prompt path is untrained"
    image_path = sorted((phantom_dir / "Images").glob("*.png"))[0]
    image = np.asarray(Image.open(image_path))
    truth = np.asarray(Image.open(phantom_dir / "Masks" / image_path.name.replace("bus_", "mask_"))) > 0
    ys, xs = np.nonzero(truth)
    prompts = (
        {"box": [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]},
        {"points": [[float(xs.mean()), float(ys.mean())]]},
        {"mask": truth.astype(np.uint8)},
    )
    predictor = RadVLSMPredictor(shipped)
    predictor.set_image(image)
    for kwargs in prompts:
        result = predictor.predict_region(**kwargs)
        assert result.region_prompt_trained and 0.0 <= result.malignancy_probability <= 1.0
        assert abs(sum(result.descriptors["margin"].values()) - 1) < 1e-4
