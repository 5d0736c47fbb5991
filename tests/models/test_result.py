"""radvlsm.models.result: the diagnosis threshold, JSON-ready summaries (no pixel arrays), default fields."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radvlsm.models.result import CandidateResult, RadVLSMResult, RegionRecognitionResult


def _result(p: float = 0.7, **kwargs) -> RadVLSMResult:
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:6] = 1
    return RadVLSMResult(
        mask=mask,
        probability=mask.astype(np.float32) * 0.9,
        malignancy_probability=p,
        visual_malignancy_probability=0.123456789,
        **kwargs,
    )


def _region(p: float = 0.2) -> RegionRecognitionResult:
    return RegionRecognitionResult(
        malignancy_probability=p,
        zero_shot={"benign": 0.6, "malignant": 0.4},
        descriptors={"shape": {"oval": 0.7, "irregular": 0.3}},
        image_zero_shot={"benign": 0.5, "malignant": 0.5},
        image_zero_shot_prompted={"benign": 0.55, "malignant": 0.45},
        region_area_fraction=0.125,
        prompt_mode="box",
        region_prompt_trained=False,
    )


@pytest.mark.parametrize("p, expected", [(0.0, "benign"), (0.4999, "benign"), (0.5, "malignant"), (1.0, "malignant")])
def test_diagnosis_is_malignant_from_one_half(p: float, expected: str) -> None:
    assert _result(p).diagnosis == expected
    assert _region(p).diagnosis == expected
    assert _result(p).summary()["diagnosis"] == _region(p).summary()["diagnosis"] == expected


def test_summary_holds_the_numbers_and_no_pixel_arrays() -> None:
    candidate = CandidateResult(
        box=[1.0, 2.0, 6.0, 3.0], points=[[3.5, 2.5]], point_labels=[1], reliability=0.75, cam_strength=0.2, kept=True
    )
    result = _result(
        np.float32(0.25), candidates=[candidate], radiomics={"original_shape2D_PixelSurface": np.float64(8.0)}
    )
    summary = result.summary()
    assert summary == {
        "diagnosis": "benign",
        "malignancy_probability": 0.25,
        "visual_malignancy_probability": 0.123457,
        "lesion_area_px": 8,
        "prompt_mode": "automatic",
        "candidates": [
            {
                "box": [1.0, 2.0, 6.0, 3.0],
                "points": [[3.5, 2.5]],
                "point_labels": [1],
                "reliability": 0.75,
                "cam_strength": 0.2,
                "kept": True,
            }
        ],
        "radiomics": {"original_shape2D_PixelSurface": 8.0},
    }
    assert json.loads(json.dumps(summary)) == summary  # numpy scalars became Python numbers
    assert all(type(summary[k]) is float for k in ("malignancy_probability", "visual_malignancy_probability"))
    assert type(summary["lesion_area_px"]) is int


def test_lesion_area_counts_a_large_uint8_mask_without_overflow() -> None:
    result = _result()
    result.mask = np.ones((300, 300), np.uint8)
    assert result.summary()["lesion_area_px"] == 90_000


def test_defaults_are_empty_and_not_shared() -> None:
    a, b = _result(), _result()
    assert (a.candidates, a.radiomics, a.response_map, a.prompt_mode) == ([], {}, None, "automatic")
    a.candidates.append(None)
    a.radiomics["x"] = 1.0
    assert b.candidates == [] and b.radiomics == {}


def test_region_summary_is_every_field_plus_the_diagnosis() -> None:
    summary = _region(0.8).summary()
    assert summary.pop("diagnosis") == "malignant"
    assert summary == {
        "malignancy_probability": 0.8,
        "zero_shot": {"benign": 0.6, "malignant": 0.4},
        "descriptors": {"shape": {"oval": 0.7, "irregular": 0.3}},
        "image_zero_shot": {"benign": 0.5, "malignant": 0.5},
        "image_zero_shot_prompted": {"benign": 0.55, "malignant": 0.45},
        "region_area_fraction": 0.125,
        "prompt_mode": "box",
        "region_prompt_trained": False,
    }
    assert json.loads(json.dumps(_region().summary())) == _region().summary()
