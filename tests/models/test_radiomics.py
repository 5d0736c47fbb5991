"""Mask-grounded radiomics: pyradiomics shape sanity, feature order, cache, edge masks, batch."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.radiomics import RadiomicsExtractor

AREA = ("original_shape2D_MeshSurface", "original_shape2D_PixelSurface")
PERIMETER = "original_shape2D_Perimeter"


def _disk(size: int, radius: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    cy, cx = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def _image(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size)).astype(np.uint8)


@pytest.fixture(scope="module")
def extractor() -> RadiomicsExtractor:
    return RadiomicsExtractor()


def test_disk_area_and_perimeter(extractor: RadiomicsExtractor) -> None:
    r = 40
    feats = extractor.extract(_image(128), _disk(128, r))
    for name in AREA:
        assert feats[name] == pytest.approx(math.pi * r**2, rel=0.02)
    # pyradiomics measures the marching-squares contour of the pixel mask, whose edges are only 0/45/90 degrees;
    # on a digitised circle that length is 16 (sqrt 2 - 1) r (about 5.5% above 2 pi r) for any r, so this is the
    # exact target; a perimeter within 2% of 2 pi r is not reachable from a binary mask.
    assert feats[PERIMETER] == pytest.approx(16 * (math.sqrt(2) - 1) * r, rel=0.02)
    assert feats[PERIMETER] == pytest.approx(2 * math.pi * r, rel=0.06)


def test_square_area_and_perimeter(extractor: RadiomicsExtractor) -> None:
    s = 40
    mask = np.zeros((128, 128), bool)
    mask[30 : 30 + s, 40 : 40 + s] = True
    feats = extractor.extract(_image(128), mask)
    assert feats["original_shape2D_PixelSurface"] == s * s
    # Marching squares cuts each corner by a triangle of area 1/8 and replaces 1 px of edge by a sqrt(2)/2 diagonal.
    assert feats["original_shape2D_MeshSurface"] == pytest.approx(s * s - 0.5, abs=1e-6)
    assert feats[PERIMETER] == pytest.approx(4 * s - 4 + 2 * math.sqrt(2), abs=1e-6)
    assert feats["original_shape2D_Elongation"] == pytest.approx(1.0, abs=1e-6)


def test_spacing_is_row_col_and_scales_shape(extractor: RadiomicsExtractor) -> None:
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True  # 20 rows x 30 cols
    base = extractor.extract(_image(64), mask)
    half = extractor.extract(_image(64), mask, spacing=(0.5, 0.5))
    assert half["original_shape2D_PixelSurface"] == pytest.approx(base["original_shape2D_PixelSurface"] / 4)
    aniso = extractor.extract(_image(64), mask, spacing=(2.0, 0.5))  # rows stretched to 40, cols squeezed to 15
    # Axis lengths of a uniform rectangle: 4 sqrt(variance) = 4 sqrt(L^2 / 12).
    assert aniso["original_shape2D_MajorAxisLength"] == pytest.approx(4 * math.sqrt(40**2 / 12), rel=0.02)
    assert aniso["original_shape2D_MinorAxisLength"] == pytest.approx(4 * math.sqrt(15**2 / 12), rel=0.02)
    assert base["original_shape2D_MajorAxisLength"] == pytest.approx(4 * math.sqrt(30**2 / 12), rel=0.02)


def test_feature_order_is_stable(extractor: RadiomicsExtractor) -> None:
    names = extractor.feature_names
    assert list(names) == sorted(names)
    assert len(names) == extractor.n_features > 50
    assert not any(n.startswith("diagnostics_") for n in names)
    for cls in ("shape2D", "firstorder", "glcm", "glrlm", "glszm"):
        assert any(n.startswith(f"original_{cls}_") for n in names), cls
    a = extractor.extract(_image(128, seed=1), _disk(128, 30))
    b = extractor.extract(_image(96, seed=2).astype(np.float32) * 0.01, _disk(96, 12, (40, 50)))
    c = extractor.extract(_image(128, seed=1), _disk(128, 30))
    assert list(a) == list(b) == list(c) == list(names)
    assert a == c
    assert all(math.isfinite(v) for v in (*a.values(), *b.values()))
    assert a != b


def test_min_max_rescaling_makes_intensity_scale_irrelevant(extractor: RadiomicsExtractor) -> None:
    img, mask = _image(64, seed=3), _disk(64, 20)
    a = extractor.extract(img, mask)
    b = extractor.extract(img.astype(np.float64) * 3.0 - 7.0, mask)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-9)


def test_cache_hit_does_not_recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = RadiomicsExtractor(cache_size=2)
    calls = {"n": 0}
    real = ex._extractor.execute

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ex._extractor, "execute", counting)
    img, m1, m2, m3 = _image(64), _disk(64, 10), _disk(64, 14), _disk(64, 18)
    first = ex.extract(img, m1)
    first["original_firstorder_Mean"] = -1.0  # mutating a result must not corrupt the cache
    again = ex.extract(img.copy(), m1.astype(np.uint8))
    assert calls["n"] == 1
    assert again["original_firstorder_Mean"] != -1.0
    again["original_firstorder_Mean"] = -1.0  # nor mutating a cache hit
    assert ex.extract(img, m1)["original_firstorder_Mean"] != -1.0
    assert calls["n"] == 1
    ex.extract(img, m1, spacing=(0.5, 0.5))  # spacing is part of the key
    assert calls["n"] == 2
    ex.extract(img, m2)  # evicts (img, m1, 1.0) -- LRU capacity 2
    ex.extract(img, m3)
    assert calls["n"] == 4 and ex.cache_info() == {"size": 2, "capacity": 2}
    ex.extract(img, m1)
    assert calls["n"] == 5
    ex.extract(img, m3)
    assert calls["n"] == 5


def test_cache_disabled_recomputes(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = RadiomicsExtractor(cache_size=0)
    calls = {"n": 0}
    real = ex._extractor.execute

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ex._extractor, "execute", counting)
    ex.extract(_image(32), _disk(32, 8))
    ex.extract(_image(32), _disk(32, 8))
    assert calls["n"] == 2 and ex.cache_info()["size"] == 0


@pytest.mark.parametrize(
    "mask_fn",
    [
        lambda: np.zeros((64, 64), bool),
        lambda: _disk(64, 1.5),  # 9 px, under minimumROISize
        lambda: np.pad(np.ones((1, 30), bool), ((10, 53), (5, 29))),  # a 1 px line
    ],
    ids=["empty", "tiny", "line"],
)
def test_empty_or_tiny_mask_gives_zeros_and_warning(
    extractor: RadiomicsExtractor, caplog: pytest.LogCaptureFixture, mask_fn
) -> None:
    with caplog.at_level(logging.WARNING, logger="radvlsm.models.radiomics"):
        feats = extractor.extract(_image(64), mask_fn())
    assert list(feats) == list(extractor.feature_names)
    assert all(v == 0.0 for v in feats.values())
    assert any("mask" in rec.getMessage() for rec in caplog.records)


def test_non_finite_features_become_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = RadiomicsExtractor(cache_size=0)
    real = ex._extractor.execute

    def with_nan(*args, **kwargs):
        out = real(*args, **kwargs)
        out["original_glcm_Imc1"] = float("nan")
        out["original_firstorder_Mean"] = float("inf")
        return out

    monkeypatch.setattr(ex._extractor, "execute", with_nan)
    feats = ex.extract(_image(64), _disk(64, 20))
    assert feats["original_glcm_Imc1"] == 0.0 and feats["original_firstorder_Mean"] == 0.0
    assert feats["original_shape2D_PixelSurface"] > 0


@pytest.mark.parametrize(
    ("image", "mask", "spacing", "source"),
    [
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), (1.0, 1.0), "image"),
        (np.zeros((8, 8)), np.zeros((8, 9)), (1.0, 1.0), "mask"),
        (np.full((8, 8), np.nan), np.zeros((8, 8)), (1.0, 1.0), "image"),
        (np.zeros((8, 8)), np.full((8, 8), 0.7), (1.0, 1.0), "mask"),
        (np.zeros((8, 8)), np.zeros((8, 8)), (1.0, 0.0), "spacing"),
        (np.zeros((8, 8)), np.zeros((8, 8)), (1.0,), "spacing"),
    ],
)
def test_bad_input_raises(extractor: RadiomicsExtractor, image, mask, spacing, source: str) -> None:
    with pytest.raises(RadVLSMInputError, match=source):
        extractor.extract(image, mask, spacing)


def test_bad_constructor_arguments(tmp_path) -> None:
    with pytest.raises(RadVLSMInputError, match="params_file"):
        RadiomicsExtractor(tmp_path / "missing.yaml")
    with pytest.raises(RadVLSMInputError, match="cache_size"):
        RadiomicsExtractor(cache_size=-1)


def test_extract_batch_shape_dtype_and_no_grad(extractor: RadiomicsExtractor) -> None:
    imgs = torch.rand(3, 1, 64, 64, requires_grad=True)
    probs = torch.zeros(3, 1, 64, 64)
    probs[0, 0] = torch.from_numpy(_disk(64, 20)).float() * 0.9
    probs[1, 0] = torch.from_numpy(_disk(64, 12)).float()
    probs[2, 0] = 0.4  # below threshold everywhere -> empty -> zeros
    out = extractor.extract_batch(imgs * 2.0, probs)
    assert out.shape == (3, extractor.n_features) and out.dtype == torch.float32
    assert not out.requires_grad and out.grad_fn is None
    assert torch.all(out[2] == 0) and not torch.equal(out[0], out[1])
    ref = extractor.extract((imgs[0, 0] * 2.0).detach().double().numpy(), _disk(64, 20))
    assert out[0].tolist() == pytest.approx(list(ref.values()), rel=1e-5, abs=1e-5)
    with pytest.raises(RadVLSMInputError, match="images"):
        extractor.extract_batch(imgs[:, 0], probs[:, 0])
    with pytest.raises(RadVLSMInputError, match="masks"):
        extractor.extract_batch(imgs, probs[:2])
