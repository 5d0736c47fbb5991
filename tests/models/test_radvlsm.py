"""The assembled model on the tiny configuration: automatic and prompted paths, results, bad prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.build import build_radvlsm


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_radvlsm("tiny", radiomics=True, n_ctx=2).eval()


def test_forward_shapes(tiny) -> None:
    out = tiny(torch.rand(2, 1, 64, 64))
    k = tiny.candidate_generator.k
    assert out.cam.shape == (2, 1, 64, 64) and out.mask_logits.shape == (2, k, 1, 64, 64)
    assert out.cues.shape == (2, k, 5) and out.candidate_diag_logits.shape == (2, k, 2)
    assert out.fused.mask_prob.shape == (2, 1, 64, 64) and out.fused.diag_logits.shape == (2, 2)
    torch.testing.assert_close(out.fused.weights.sum(1), torch.ones(2))
    assert ((out.candidates.boxes >= 0) & (out.candidates.boxes <= 64)).all()


def test_predict_automatic_result_at_original_size(tiny) -> None:
    image = (np.random.default_rng(0).random((90, 70)) * 255).astype(np.uint8)
    result = tiny.predict(image)
    assert result.mask.shape == (90, 70) and result.mask.dtype == np.uint8
    assert result.probability.shape == (90, 70) and result.response_map.shape == (90, 70)
    assert 0 <= result.malignancy_probability <= 1 and result.prompt_mode == "automatic"
    assert result.candidates and abs(sum(c.reliability for c in result.candidates) - 1) < 1e-4
    for c in result.candidates:
        assert 0 <= c.box[0] < c.box[2] <= 70 and 0 <= c.box[1] < c.box[3] <= 90
    assert len(result.radiomics) == len(tiny.radiomics.feature_names)
    summary = result.summary()
    assert summary["diagnosis"] in ("benign", "malignant") and "candidates" in summary


def test_prompted_paths_reuse_the_embedding(tiny) -> None:
    image = np.random.default_rng(1).random((64, 80)).astype(np.float32)
    tiny.embedding_cache.misses = 0
    r1 = tiny.predict(image, points=[[40, 30]])
    r2 = tiny.predict(image, box=[10, 10, 50, 40], points=[[30, 20], [5, 5]], point_labels=[1, 0])
    r3 = tiny.predict(image, mask=np.pad(np.ones((20, 20)), ((20, 24), (30, 30))))
    assert (r1.prompt_mode, r2.prompt_mode, r3.prompt_mode) == ("points", "points+box", "mask")
    assert r1.mask.shape == (64, 80) and not r1.candidates
    assert tiny.embedding_cache.misses == 1  # one encoder pass for three prompts


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": [[100, 5]]}, "outside"),
        ({"points": [[1, 2, 3]]}, "pairs"),
        ({"box": [30, 30, 10, 40]}, "no area"),
        ({"box": [-5, 0, 10, 10]}, "outside"),
        ({"points": [[5, 5]], "point_labels": [3]}, "0 or 1"),
        ({"mask": np.ones((10, 10))}, "mask"),
        ({"mask": np.zeros((64, 80))}, "empty"),
    ],
)
def test_bad_prompts_are_clear_errors(tiny, kwargs, match) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        tiny.predict(np.zeros((64, 80), np.float32), **kwargs)


@pytest.mark.parametrize(
    ("image", "match"),
    [(np.zeros((4, 8, 8)), "2D"), (np.full((8, 8), np.nan), "NaN"), (np.zeros((1, 30)), "too small")],
)
def test_bad_images_are_clear_errors(tiny, image, match) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        tiny.predict(image)


@pytest.mark.slow
def test_real_weights_end_to_end_on_a_phantom_image(phantom_dir) -> None:
    from PIL import Image

    model = build_radvlsm("litemedsam").eval()
    image_path = sorted((phantom_dir / "Images").glob("*.png"))[0]
    mask = np.asarray(Image.open(phantom_dir / "Masks" / image_path.name.replace("bus_", "mask_"))) > 0
    ys, xs = np.nonzero(mask)
    result = model.predict(np.asarray(Image.open(image_path)), box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    dice = 2 * (result.mask.astype(bool) & mask).sum() / (result.mask.sum() + mask.sum())
    assert dice > 0.7, dice
    auto = model.predict(np.asarray(Image.open(image_path)))
    assert auto.mask.shape == mask.shape and auto.candidates


def test_frozen_encoder_stays_in_eval_mode_while_training(tiny) -> None:
    from radvlsm.engine.workflow import stage_parameters

    stage_parameters(tiny, "segment")
    tiny.train()
    assert tiny.training and tiny.mask_decoder.training and not tiny.image_encoder.training
    stage_parameters(tiny, "segment", train_encoder=True)
    tiny.train()
    assert tiny.image_encoder.training
    tiny.eval()


def test_clicks_become_boxes_that_hold_them(tiny) -> None:
    emb = tiny.encode_image(torch.rand(3, 1, 64, 64))
    points = torch.tensor([[[10.0, 12.0]], [[60.0, 3.0]], [[32.0, 32.0]]])
    boxes = tiny.boxes_from_clicks(emb, points, torch.ones(3, 1, dtype=torch.long))
    assert boxes.shape == (3, 4)
    assert ((boxes >= 0) & (boxes <= 64)).all()
    for box, (x, y) in zip(boxes, points[:, 0], strict=True):
        assert box[0] <= x <= box[2] and box[1] <= y <= box[3]
    tiny.click_to_box = False
    try:
        mask_logits, *_ = tiny.forward_prompted(emb[:1], points=points[:1], point_labels=torch.ones(1, 1).long())
        assert mask_logits.shape == (1, 1, 64, 64)
    finally:
        tiny.click_to_box = True


@settings(max_examples=25, deadline=None)
@given(h=st.integers(8, 700), w=st.integers(8, 700), seed=st.integers(0, 2**16))
def test_candidates_and_clicks_lie_inside_any_image(tiny, h, w, seed) -> None:
    """Property: automatic candidate boxes and points, and click-completed boxes, stay inside the image."""
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w)) * 255).astype(np.uint8)
    result = tiny.predict(image)
    assert result.mask.shape == (h, w)
    for c in result.candidates:
        x1, y1, x2, y2 = c.box
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h, (c.box, (h, w))
        assert all(0 <= x <= w and 0 <= y <= h for x, y in c.points), (c.points, (h, w))
    click = [[float(rng.uniform(0, w)), float(rng.uniform(0, h))]]
    clicked = tiny.predict(image, points=click)
    assert clicked.mask.shape == (h, w) and clicked.prompt_mode == "points"
