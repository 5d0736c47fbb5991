"""The one image reader (radvlsm.data.image_io): hostile files, agreement with PIL, the suffix sets, listing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import gradient, write_hostile_studies
from PIL import Image

from radvlsm.data.image_io import (
    FLAT_SUFFIXES,
    IMAGE_SUFFIXES,
    image_stem,
    list_images,
    load_image_2d,
    matching_suffix,
    read_image_2d,
)
from radvlsm.errors import RadVLSMInputError


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, str]]]:
    folder = tmp_path_factory.mktemp("hostile")
    good = folder / "good.png"
    Image.fromarray(gradient(64, 48)).save(good)
    return folder, write_hostile_studies(folder, good, huge=False)


def test_each_hostile_file_is_read_or_refused_with_its_reason(hostile: tuple[Path, dict[str, tuple[int, str]]]) -> None:
    folder, expected = hostile
    for name, (status, words) in expected.items():
        path = next(folder.glob(f"{name}.*"))
        if status == 200:
            gray = read_image_2d(path)
            with Image.open(path) as im:
                assert gray.shape == (im.height, im.width) and gray.dtype == np.float32, name
            assert np.isfinite(gray).all(), name
        else:
            with pytest.raises(RadVLSMInputError, match=words) as err:
                read_image_2d(path)
            assert str(path) in str(err.value), name  # the message names the file


def test_sixteen_bit_and_rgba_keep_their_intensities(hostile: tuple[Path, dict[str, tuple[int, str]]]) -> None:
    folder, _ = hostile
    gray16 = read_image_2d(folder / "gray16.png")
    np.testing.assert_array_equal(gray16, gradient(120, 160, np.uint16, 65535).astype(np.float32))
    rgba = read_image_2d(folder / "rgba.png")  # R = G = B = the ramp, alpha 128 ignored
    np.testing.assert_allclose(rgba, gradient(90, 110).astype(np.float32), atol=1e-3)
    np.testing.assert_array_equal(read_image_2d(folder / "constant.png"), np.full((64, 80), 77, np.float32))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_agrees_with_the_pil_luminance_the_evaluation_used(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    shape = (33, 47, 3) if mode == "RGB" else (33, 47)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path)
    with Image.open(path) as im:
        pil = np.asarray(im.convert("F"), dtype=np.float32)
    np.testing.assert_allclose(read_image_2d(path), pil, atol=1e-3)


def test_nifti_keeps_its_file_geometry(tmp_path: Path) -> None:
    import nibabel as nib

    data = np.arange(17 * 12, dtype=np.float32).reshape(17, 12, 1)  # x, y, 1
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 1, 1])), str(tmp_path / "a.nii.gz"))
    image = load_image_2d(tmp_path / "a.nii.gz")
    assert image.size_hw == (12, 17) and image.spatial_shape == (17, 12, 1)
    np.testing.assert_array_equal(image.gray, data[..., 0].T)
    assert image.affine is not None and image.affine[0, 0] == pytest.approx(0.5)
    mask = (image.gray > 100).astype(np.uint8)
    np.testing.assert_array_equal(image.to_file_geometry(mask)[..., 0], mask.T)


def test_suffixes_stems_and_listing(tmp_path: Path) -> None:
    assert matching_suffix("A.NII.GZ") == ".nii.gz" and matching_suffix("a.nii") == ".nii"
    assert matching_suffix("a.JPG", FLAT_SUFFIXES) == ".jpg" and matching_suffix("a.dcm", FLAT_SUFFIXES) is None
    assert matching_suffix("notes.txt") is None and set(FLAT_SUFFIXES) <= set(IMAGE_SUFFIXES)
    assert image_stem("dir/case 1.nii.gz") == "case 1" and image_stem("b.Png") == "b" and image_stem("c.txt") == "c"
    for name in ("b.PNG", "a.jpg", "c.nii.gz", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "e.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, IMAGE_SUFFIXES)] == ["a.jpg", "b.PNG", "c.nii.gz"]
    assert list_images(tmp_path / "e.png") == []
    with pytest.raises(RadVLSMInputError, match="not a folder"):
        list_images(tmp_path / "a.jpg")
