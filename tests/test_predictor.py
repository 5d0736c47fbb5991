"""RadVLSMPredictor on the tiny network: results at the original size, one embedding per image, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from radvlsm.config import build_network
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.errors import RadVLSMInputError
from radvlsm.predictor import RadVLSMPredictor


@pytest.fixture(scope="module")
def tiny(tiny_model):
    torch.manual_seed(0)
    return tiny_model(radiomics=True, n_ctx=2).eval()


def test_predicting_before_set_image_is_a_clear_error(tiny) -> None:
    predictor = RadVLSMPredictor(tiny)
    assert not predictor.is_image_set
    with pytest.raises(RadVLSMInputError, match="set_image"):
        predictor.predict()
    predictor.set_image(np.zeros((20, 30)))
    assert predictor.is_image_set
    predictor.reset_image()
    with pytest.raises(RadVLSMInputError, match="set_image"):
        predictor.predict_region(box=[1, 1, 5, 5])


def test_predict_automatic_result_at_original_size(tiny, predict) -> None:
    image = (np.random.default_rng(0).random((90, 70)) * 255).astype(np.uint8)
    result = predict(tiny, image)
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
    predictor = RadVLSMPredictor(tiny, EmbeddingCache.for_encoder(tiny.image_encoder, max_items=4))
    predictor.set_image(image)
    r1 = predictor.predict(points=[[40, 30]])
    r2 = predictor.predict(box=[10, 10, 50, 40], points=[[30, 20], [5, 5]], point_labels=[1, 0])
    r3 = predictor.predict(mask=np.pad(np.ones((20, 20)), ((20, 24), (30, 30))))
    assert (r1.prompt_mode, r2.prompt_mode, r3.prompt_mode) == ("points", "points+box", "mask")
    assert r1.mask.shape == (64, 80) and not r1.candidates
    predictor.set_image(image)  # the same image again: from the cache
    assert predictor.embedding_cache.misses == 1 and predictor.embedding_cache.hits == 1


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
def test_bad_prompts_are_clear_errors(tiny, predict, kwargs, match) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        predict(tiny, np.zeros((64, 80), np.float32), **kwargs)


@pytest.mark.parametrize(
    ("image", "match"),
    [(np.zeros((4, 8, 8)), "2D"), (np.full((8, 8), np.nan), "NaN"), (np.zeros((1, 30)), "too small")],
)
def test_bad_images_are_clear_errors(tiny, image, match) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        RadVLSMPredictor(tiny).set_image(image)


@pytest.mark.slow
def test_real_weights_end_to_end_on_a_phantom_image(phantom_dir) -> None:
    """The bundle's real network (LiteMedSAM, MiniLM; untrained heads): a box segments the lesion."""
    from PIL import Image

    predictor = RadVLSMPredictor(build_network().eval())
    image_path = sorted((phantom_dir / "Images").glob("*.png"))[0]
    mask = np.asarray(Image.open(phantom_dir / "Masks" / image_path.name.replace("bus_", "mask_"))) > 0
    ys, xs = np.nonzero(mask)
    predictor.set_image(np.asarray(Image.open(image_path)))
    result = predictor.predict(box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    dice = 2 * (result.mask.astype(bool) & mask).sum() / (result.mask.sum() + mask.sum())
    assert dice > 0.7, dice
    auto = predictor.predict()
    assert auto.mask.shape == mask.shape and auto.candidates


@settings(max_examples=25, deadline=None)
@given(h=st.integers(8, 700), w=st.integers(8, 700), seed=st.integers(0, 2**16))
def test_candidates_and_clicks_lie_inside_any_image(tiny, h, w, seed) -> None:
    """Property: automatic candidate boxes and points, and click-completed boxes, stay inside the image."""
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w)) * 255).astype(np.uint8)
    predictor = RadVLSMPredictor(tiny)
    predictor.set_image(image)
    result = predictor.predict()
    assert result.mask.shape == (h, w)
    for c in result.candidates:
        x1, y1, x2, y2 = c.box
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h, (c.box, (h, w))
        assert all(0 <= x <= w and 0 <= y <= h for x, y in c.points), (c.points, (h, w))
    click = [[float(rng.uniform(0, w)), float(rng.uniform(0, h))]]
    clicked = predictor.predict(points=click)
    assert clicked.mask.shape == (h, w) and clicked.prompt_mode == "points"


def test_a_click_selects_the_automatic_lesion_under_it(tiny_model) -> None:
    """Clicks only: the first foreground click picks the automatic mask's lesion (its box goes to the user-box
    decoder, the other clicks with it); a click on no lesion keeps the response-map route; the automatic
    result is computed once per image and reused by the clicks."""
    torch.manual_seed(0)
    model = tiny_model(radiomics=False, click_selects_lesion=True).eval()
    image = np.random.default_rng(3).random((64, 64)).astype(np.float32)  # square: model frame = image frame
    predictor = RadVLSMPredictor(model)
    predictor.set_image(image)
    lesions = torch.zeros(1, 64, 64, dtype=torch.bool)
    lesions[0, 10:20, 30:44] = True  # one lesion: x 30-43, y 10-19
    key_args = (predictor.features, predictor.geometry.resized_size)
    assert model.automatic_mask(*key_args, out=_Out(lesions)).equal(lesions)  # stored as if the automatic pass ran
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))  # any further automatic pass would show here

    def prompted(**prompts) -> np.ndarray:
        with torch.no_grad():
            logits, *_ = model.forward_prompted(predictor.features, **prompts)
        return (torch.sigmoid(logits[0, 0]) > 0.5).numpy().astype(np.uint8)

    box = torch.tensor([[30.0, 10.0, 44.0, 20.0]])
    assert np.array_equal(predictor.predict(points=[[35, 15]]).mask, prompted(boxes=box))
    second = predictor.predict(points=[[1, 60], [35, 15], [40, 12]], point_labels=[0, 1, 0])
    rest = torch.tensor([[[1.0, 60.0], [40.0, 12.0]]])
    expected = prompted(boxes=box, points=rest, point_labels=torch.tensor([[0, 0]]))
    assert np.array_equal(second.mask, expected) and second.prompt_mode == "points"
    outside = predictor.predict(points=[[5, 50]])  # on no lesion: the click and a box from the response map
    one = torch.ones(1, 1, dtype=torch.long)
    assert np.array_equal(outside.mask, prompted(points=torch.tensor([[[5.0, 50.0]]]), point_labels=one))
    assert not calls  # every click reused the stored automatic mask
    model.click_selects_lesion = False  # the response-map route for every click
    clicked = predictor.predict(points=[[35, 15]]).mask
    assert np.array_equal(clicked, prompted(points=torch.tensor([[[35.0, 15.0]]]), point_labels=one))
    assert not np.array_equal(clicked, prompted(boxes=box))  # the two routes differ here: the test can tell them


class _Out:
    """Stands in for a :class:`RadVLSMOutput` in ``automatic_mask`` (only ``mask_prob`` is read)."""

    def __init__(self, lesions: torch.Tensor) -> None:
        self.mask_prob = lesions[:, None].float()


def test_the_automatic_result_is_kept_for_clicks(tiny_model) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False, click_selects_lesion=True).eval()
    predictor = RadVLSMPredictor(model)
    predictor.set_image(np.random.default_rng(4).random((48, 64)).astype(np.float32))
    predictor.predict()
    assert len(model.lesion_cache._items) == 1  # stored by the automatic result
    stored = model.automatic_mask(predictor.features, predictor.geometry.resized_size)
    assert len(model.lesion_cache._items) == 1  # and found again, not recomputed
    with torch.no_grad():
        fresh = model(embeddings=predictor.features, content_size=predictor.geometry.resized_size).mask_prob[:, 0] > 0.5
    assert stored.shape == (1, model.image_size, model.image_size) and stored.equal(fresh)
