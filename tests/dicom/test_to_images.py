"""DICOM -> PNG: US images back to the original pixels, SEG labels to masks, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from radvlsm.cli import main
from radvlsm.dicom.from_images import convert_images
from radvlsm.dicom.to_images import convert_dicom, image_pixels
from radvlsm.errors import RadVLSMInputError


def test_round_trip_gives_the_original_pngs(phantom_dir: Path, tmp_path: Path) -> None:
    convert_images([phantom_dir], tmp_path / "dcm")
    assert main(["dicom", "to-images", str(tmp_path / "dcm"), "--out", str(tmp_path / "png")]) == 0
    originals = sorted((phantom_dir / "Images").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == [p.name for p in originals]
    for original in originals:
        with Image.open(original) as a, Image.open(tmp_path / "png" / original.name) as b:
            assert np.array_equal(np.asarray(a.convert("L")), np.asarray(b))


def test_monochrome1_is_inverted(phantom_dir: Path, tmp_path: Path) -> None:
    path = convert_images([sorted((phantom_dir / "Images").glob("*.png"))[0]], tmp_path)[0]
    ds = dcmread(str(path))
    original = ds.pixel_array.copy()
    ds.PhotometricInterpretation = "MONOCHROME1"
    shown = image_pixels(ds)
    assert np.array_equal(shown.astype(int), original.max() + original.min() - original.astype(int))


def test_not_dicom_and_multiframe_are_clear_errors(phantom_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"nope" * 50)
    with pytest.raises(RadVLSMInputError, match=r"x\.dcm: not a readable DICOM"):
        convert_dicom([tmp_path / "x.dcm"], tmp_path / "out")
    path = convert_images([sorted((phantom_dir / "Images").glob("*.png"))[0]], tmp_path / "one")[0]
    ds = dcmread(str(path))
    ds.NumberOfFrames = 2
    with pytest.raises(RadVLSMInputError, match="2 frames"):
        image_pixels(ds)
