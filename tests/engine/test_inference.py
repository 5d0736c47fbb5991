"""The bundle's folder inference on hostile files: each bad image is skipped with its reason, the rest done."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_inputs import write_hostile_studies
from PIL import Image

from radvlsm.data.image_io import FLAT_SUFFIXES
from radvlsm.engine.inference import predict_images
from radvlsm.errors import RadVLSMInputError
from radvlsm.predictor import RadVLSMPredictor


def test_a_folder_of_hostile_images_is_processed_and_each_failure_named(
    tiny_model, phantom_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    good = sorted((phantom_dir / "Images").glob("*.png"))[0]
    shutil.copy(good, folder / good.name)
    expected = write_hostile_studies(folder, good, huge=False)  # the server test has the huge one
    torch.manual_seed(0)
    model = tiny_model(radiomics=False)
    report = predict_images(RadVLSMPredictor(model), folder, tmp_path / "out")
    listed = [p for p in folder.iterdir() if p.suffix.lower() in FLAT_SUFFIXES]
    assert report["n_images"] == len(listed) == report["n_done"] + len(report["failures"])
    for name, (status, words) in expected.items():
        path = next(folder.glob(f"{name}.*"))
        if path.suffix.lower() not in FLAT_SUFFIXES:
            continue
        if status == 200:
            with Image.open(path) as im:
                assert Image.open(tmp_path / "out" / f"{name}_mask.png").size == im.size, name
        else:
            assert words in report["failures"][str(path)], (name, report["failures"])
    assert good.name in report["results"]


def test_an_empty_folder_is_an_input_error(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(RadVLSMInputError, match="no images"):
        predict_images(RadVLSMPredictor(tiny_model(radiomics=False)), tmp_path, tmp_path)


def test_predict_refuses_non_2d_and_non_finite_arrays(tiny_model) -> None:
    predictor = RadVLSMPredictor(tiny_model(radiomics=False).eval())
    with pytest.raises(RadVLSMInputError, match="2D image"):
        predictor.set_image(np.zeros((4, 30, 30)))
    with pytest.raises(RadVLSMInputError, match="NaN"):
        predictor.set_image(np.full((30, 30), np.nan))
    with pytest.raises(RadVLSMInputError, match="too small"):
        predictor.set_image(np.zeros((1, 30)))
    predictor.set_image(np.zeros((40, 30)))
    full = predictor.predict(mask=np.ones((40, 30)))
    assert full.mask.shape == (40, 30)
    with pytest.raises(RadVLSMInputError, match="mask prompt is empty"):
        predictor.predict(mask=np.zeros((40, 30)))
    with pytest.raises(RadVLSMInputError, match="no area"):
        predictor.predict(box=[20, 20, 10, 10])
    with pytest.raises(RadVLSMInputError, match="outside"):
        predictor.predict(points=[[-1, 5]])
