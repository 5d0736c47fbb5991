"""Feature-level region prompts: rasterising points, boxes and masks, the zero-initialised path, bad prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.region_prompt import RegionContextFusion, RegionPromptEncoder, RegionRasterizer, pool_region
from radvlsm.predictor import RadVLSMPredictor

S = 64


@pytest.fixture(scope="module")
def tiny(tiny_model):
    torch.manual_seed(0)
    return tiny_model(radiomics=False).eval()


def disk_mask(cx: float, cy: float, r: float, size: int = S) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= r**2).float()[None, None]


def test_points_box_and_mask_of_one_region_give_one_map_shape() -> None:
    raster = RegionRasterizer(S)
    maps = {
        "points": raster(points=torch.tensor([[[30.0, 20.0], [34.0, 22.0]]])),
        "box": raster(boxes=torch.tensor([[22.0, 12.0, 42.0, 30.0]])),
        "mask": raster(masks=disk_mask(32, 21, 8)),
    }
    for name, region in maps.items():
        assert region.shape == (1, 1, S, S), name
        assert float(region.min()) >= 0 and float(region.max()) <= 1, name
        ys, xs = torch.nonzero(region[0, 0] > 0.5, as_tuple=True)
        # every form marks the same place: its centre of mass lies in the box
        assert 22 <= float(xs.float().mean()) <= 42 and 12 <= float(ys.float().mean()) <= 30, name
    box = maps["box"][0, 0]
    assert float(box[20, 30]) == 1 and float(box[40, 30]) == 0 and float(box.sum()) == 20 * 18


def test_background_points_carve_the_region_and_cannot_stand_alone() -> None:
    raster = RegionRasterizer(S)
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    plain = raster(boxes=box)
    carved = raster(points=torch.tensor([[[30.0, 30.0]]]), point_labels=torch.tensor([[0]]), boxes=box)
    assert float(carved[0, 0, 30, 30]) < 0.1 < float(plain[0, 0, 30, 30]) == 1
    with pytest.raises(RadVLSMInputError, match="region"):
        raster(points=torch.tensor([[[30.0, 30.0]]]), point_labels=torch.tensor([[0]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": torch.tensor([[[70.0, 10.0]]])}, "outside"),
        ({"points": torch.tensor([[[-1.0, 10.0]]])}, "outside"),
        ({"boxes": torch.tensor([[10.0, 10.0, 80.0, 20.0]])}, "outside"),
        ({"boxes": torch.tensor([[30.0, 10.0, 20.0, 20.0]])}, "no area"),
        ({"masks": torch.zeros(1, 1, S, S)}, "empty"),
        ({"masks": torch.ones(1, 1, 32, 32)}, "mask must be"),
        ({}, "give a region"),
    ],
)
def test_bad_prompts_are_rejected_with_a_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        RegionRasterizer(S)(**kwargs)


def test_zero_initialised_path_leaves_features_unchanged() -> None:
    torch.manual_seed(1)
    encoder = RegionPromptEncoder(32, hidden=16)
    features = torch.randn(2, 32, 16, 16)
    region = RegionRasterizer(S)(boxes=torch.tensor([[4.0, 4.0, 30.0, 40.0], [20.0, 20.0, 60.0, 60.0]]))
    prompted = encoder(features, region)
    assert (prompted - features).abs().max() < 1e-6
    # the path is trainable: its zero layer gets a gradient, and one step makes the prompt matter
    prompted.pow(2).sum().backward()
    assert encoder.to_features.weight.grad.abs().sum() > 0
    with torch.no_grad():
        encoder.to_features.weight.add_(0.1)
    assert (encoder(features, region) - features).abs().max() > 1e-3


def test_untrained_model_recognises_a_region_as_plain_pooling(tiny) -> None:
    torch.manual_seed(2)
    embeddings = torch.randn(2, 32, 16, 16)
    region = tiny.region_map(masks=torch.cat([disk_mask(20, 20, 6), disk_mask(40, 30, 10)]))
    with torch.no_grad():
        out = tiny.recognize_region(embeddings, region)
        auto_plain = tiny(embeddings=embeddings)
        auto_prompted = tiny(embeddings=out.features)
    pooled = pool_region(embeddings, region)
    assert (out.features - embeddings).abs().max() < 1e-6
    assert (out.region_emb - pooled).abs().max() < 1e-6
    assert (out.global_emb - embeddings.mean(dim=(2, 3))).abs().max() < 1e-6
    torch.testing.assert_close(out.diag_logits, tiny.diagnose(pooled), atol=1e-6, rtol=0)
    # the automatic pipeline on the prompted features is the unprompted one
    torch.testing.assert_close(auto_prompted.fused.mask_prob, auto_plain.fused.mask_prob, atol=1e-6, rtol=0)
    torch.testing.assert_close(auto_prompted.fused.diag_logits, auto_plain.fused.diag_logits, atol=1e-6, rtol=0)


def test_weights_saved_without_the_region_path_still_load(tiny_model, tiny, tmp_path) -> None:
    from radvlsm.models.weights import load_trained_weights, trained_state_dict

    state = {
        k: v for k, v in trained_state_dict(tiny).items() if not k.startswith(("region_prompt.", "region_context."))
    }
    torch.save(state, tmp_path / "old.pt")
    torch.manual_seed(5)
    fresh = tiny_model(radiomics=False).eval()
    load_trained_weights(fresh, tmp_path / "old.pt")
    embeddings = torch.randn(1, 32, 16, 16)
    region = fresh.region_map(boxes=torch.tensor([[10.0, 10.0, 40.0, 40.0]]))
    with torch.no_grad():
        assert (fresh.recognize_region(embeddings, region).features - embeddings).abs().max() < 1e-6


def test_context_fusion_starts_as_the_region_embedding() -> None:
    fusion = RegionContextFusion(8)
    region, global_emb = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.equal(fusion(region, global_emb), region)
    with pytest.raises(RadVLSMInputError):
        fusion(region, torch.randn(3, 4))


def test_encoder_rejects_mismatched_inputs() -> None:
    encoder = RegionPromptEncoder(32, hidden=16)
    with pytest.raises(RadVLSMInputError, match="expected"):
        encoder(torch.randn(1, 16, 16, 16), torch.zeros(1, 1, S, S))
    with pytest.raises(RadVLSMInputError, match="expected"):
        encoder(torch.randn(2, 32, 16, 16), torch.zeros(1, 1, S, S))


def test_predict_region_returns_region_and_image_level_scores(tiny) -> None:
    image = (np.random.default_rng(0).random((90, 70)) * 255).astype(np.uint8)
    mask = np.zeros((90, 70), np.uint8)
    mask[30:50, 20:40] = 1
    predictor = RadVLSMPredictor(tiny)
    predictor.set_image(image)
    for kwargs, mode in (
        ({"box": [20, 30, 40, 50]}, "box"),
        ({"points": [[30, 40]]}, "points"),
        ({"mask": mask}, "mask"),
    ):
        result = predictor.predict_region(**kwargs)
        assert result.prompt_mode == mode and 0 <= result.malignancy_probability <= 1
        assert abs(sum(result.zero_shot.values()) - 1) < 1e-5 and set(result.zero_shot) == {"benign", "malignant"}
        assert set(result.descriptors) >= {"shape", "margin", "orientation", "echo_pattern", "posterior_features"}
        for scores in result.descriptors.values():
            assert abs(sum(scores.values()) - 1) < 1e-5
        assert abs(result.image_zero_shot["malignant"] - result.image_zero_shot_prompted["malignant"]) < 1e-6
        assert 0 < result.region_area_fraction < 1 and not result.region_prompt_trained
        assert result.summary()["diagnosis"] in ("benign", "malignant")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": [[80, 10]]}, "outside"),
        ({"box": [10, 10, 75, 50]}, "outside"),
        ({"box": [10, 10, 5, 50]}, "no area"),
        ({"mask": np.zeros((90, 70), np.uint8)}, "empty"),
        ({"mask": np.ones((60, 70), np.uint8)}, "mask"),
        ({"points": [[30, 40]], "point_labels": [0]}, "region"),
        ({}, "give the region"),
    ],
)
def test_predict_region_rejects_bad_prompts(tiny, kwargs: dict, match: str) -> None:
    predictor = RadVLSMPredictor(tiny)
    predictor.set_image(np.zeros((90, 70), np.uint8))
    with pytest.raises(RadVLSMInputError, match=match):
        predictor.predict_region(**kwargs)
