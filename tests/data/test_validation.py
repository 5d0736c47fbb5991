from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from radvlsm.data.validation import mask_bbox, read_mask, validate_item
from radvlsm.errors import DataValidationError


def _item(tmp_path: Path, helpers: SimpleNamespace, h: int = 20, w: int = 30, box=(3, 4, 5, 6)) -> dict:
    image, mask = helpers.lesion_pair(h, w, box)
    return {
        "id": "x",
        "image": str(helpers.save_png(image, tmp_path / "x.png")),
        "label": str(helpers.save_png(mask, tmp_path / "x_mask.png")),
        "pathology": "benign",
    }


def test_good_item_and_rgba_pass(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    validate_item(item)
    rgba = np.stack([np.asarray(Image.open(item["image"]))] * 3 + [np.full((20, 30), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(item["image"])
    validate_item(item)


def test_zero_byte_image(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    Path(item["image"]).write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"x\.png.*zero bytes"):
        validate_item(item)


def test_not_an_image(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    Path(item["image"]).write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(DataValidationError, match=r"x\.png.*not a readable image"):
        validate_item(item, check_pixels=False)


def test_truncated_image_needs_pixel_check(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers, h=64, w=64)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(item["image"])
    data = Path(item["image"]).read_bytes()
    Path(item["image"]).write_bytes(data[: len(data) // 2])
    validate_item(item, check_pixels=False)  # the header is intact
    with pytest.raises(DataValidationError, match=r"x\.png.*truncated"):
        validate_item(item)


def test_mask_of_another_size(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    helpers.save_png(np.zeros((21, 30)), Path(item["label"]))
    with pytest.raises(DataValidationError, match=r"x_mask\.png.*21x30.*20x30"):
        validate_item(item, check_pixels=False)


def test_empty_mask_on_lesion_image(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers, box=(0, 0, 0, 0))
    with pytest.raises(DataValidationError, match=r"x_mask\.png.*empty.*benign"):
        validate_item(item)
    validate_item({**item, "pathology": "normal"})  # normal images have empty masks


def test_multiframe_image_is_3d(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    frames = [Image.fromarray(np.full((20, 30), v, np.uint8)) for v in (10, 20, 30)]
    path = tmp_path / "stack.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(DataValidationError, match=r"stack\.tif.*3 frames.*2D expected"):
        validate_item({**item, "image": str(path)})


def test_nifti_volume_is_3d_and_2d_nifti_is_fine(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    nib.save(nib.Nifti1Image(np.zeros((30, 20, 5), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(DataValidationError, match=r"vol\.nii\.gz.*3D volume"):
        validate_item({**item, "image": str(tmp_path / "vol.nii.gz")})
    nib.save(nib.Nifti1Image(np.ones((30, 20), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    validate_item({**item, "image": str(tmp_path / "flat.nii.gz")})  # x=30, y=20 -> 20x30 like the mask


def test_missing_file_and_bad_pathology(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _item(tmp_path, helpers)
    with pytest.raises(DataValidationError, match="not found"):
        validate_item({**item, "image": str(tmp_path / "nope.png")})
    with pytest.raises(DataValidationError, match="unknown pathology"):
        validate_item({**item, "pathology": "cancer"})


def test_read_mask_and_bbox(tmp_path: Path, helpers: SimpleNamespace) -> None:
    _, mask = helpers.lesion_pair(20, 30, (3, 4, 5, 6))
    path = helpers.save_png(mask, tmp_path / "m.png")
    assert mask_bbox(read_mask(path)) == [3, 4, 5, 6]
    assert mask_bbox(np.zeros((4, 4), bool)) is None
