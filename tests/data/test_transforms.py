from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import DataLoader, Dataset, MetaTensor, list_data_collate
from monai.transforms import Invertd
from PIL import Image

from radvlsm.data.transforms import (
    LongestSidePad,
    LongestSidePadd,
    ToModelFrame,
    get_transforms,
    invert_to_original,
    mask_to_box,
)
from radvlsm.errors import RadVLSMInputError


def _pair(tmp_path: Path, helpers: SimpleNamespace, h: int, w: int, box=None, name: str = "im") -> dict:
    box = box or (w // 4, h // 4, max(1, w // 2), max(1, h // 3))
    image, mask = helpers.lesion_pair(h, w, box)
    return {
        "image": str(helpers.save_png(image, tmp_path / f"{name}.png")),
        "label": str(helpers.save_png(mask, tmp_path / f"{name}_mask.png")),
        "id": name,
        "case": name,
        "pathology": "benign",
        "diagnosis": 0,
        "birads": None,
        "histology": None,
        "device": None,
        "bbox": list(box),
        "text": "a benign lesion",
    }


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 1500), w=st.integers(1, 1500))
def test_array_round_trip_shapes(h: int, w: int) -> None:
    image = torch.rand(1, h, w)
    frame = LongestSidePad(256, "area")(image)
    assert frame.shape == (1, 256, 256)
    back = invert_to_original(frame, (h, w), mode="bilinear")
    assert back.shape == (1, h, w)
    mask = torch.zeros(1, h, w)
    mask[:, h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)] = 1
    pad = LongestSidePad(256, "nearest")
    inverted = pad.inverse(pad(MetaTensor(mask)))
    assert inverted.shape == (1, h, w) and not inverted.applied_operations
    if min(h, w) >= 8 and min(h, w) * 256 / max(h, w) >= 64:  # a centred block survives at this resolution
        iou = (inverted * mask).sum() / ((inverted + mask) > 0).sum()
        assert iou > 0.9


def test_inverse_needs_the_traced_tensor() -> None:
    with pytest.raises(RadVLSMInputError, match="MetaTensor"):
        LongestSidePad(256, "nearest").inverse(torch.zeros(1, 256, 256))


def test_invertd_restores_original_size(tmp_path: Path, helpers: SimpleNamespace) -> None:
    """A prediction in the model frame goes back to the image's size through MONAI's ``Invertd``."""
    item = _pair(tmp_path, helpers, 300, 200)
    preprocessing = get_transforms("eval", track_meta=True)
    out = preprocessing(item)
    out["pred"] = out["label"].clone()
    back = Invertd(keys="pred", transform=preprocessing, orig_keys="label", nearest_interp=True)(out)
    assert tuple(back["pred"].shape[-2:]) == (300, 200)
    original = torch.from_numpy(np.asarray(Image.open(item["label"])) > 0).float()
    iou = (back["pred"][0] * original).sum() / ((back["pred"][0] + original) > 0).sum()
    assert iou > 0.9


def test_to_model_frame_matches_geometry() -> None:
    image = np.random.default_rng(0).uniform(0, 255, (300, 200, 3)).astype(np.float32)
    prep = ToModelFrame(256)
    frame = prep(image)
    assert frame.shape == (1, 256, 256) and float(frame.max()) <= 1.0
    assert prep.geometry(image).resized_size == (256, 171)
    assert float(frame[0, :, 171:].abs().sum()) == 0.0  # right padding
    with pytest.raises(RadVLSMInputError, match="NaN"):
        prep(np.full((8, 8), np.nan))


@pytest.mark.parametrize(
    ("h", "w"), [(300, 200), (200, 300), (5, 3), (1200, 900)], ids=["portrait", "landscape", "tiny", "large"]
)
def test_eval_round_trip_from_file(tmp_path: Path, helpers: SimpleNamespace, h: int, w: int) -> None:
    item = _pair(tmp_path, helpers, h, w)
    out = get_transforms("eval")(item)
    assert out["image"].shape == (1, 256, 256) and out["image"].dtype == torch.float32
    assert out["label"].shape == (1, 256, 256) and set(out["label"].unique().tolist()) <= {0.0, 1.0}
    assert out["original_size"].tolist() == [h, w] and out["original_size"].dtype == torch.int64
    assert out["image"].min() >= 0.0 and out["image"].max() == 1.0
    back = invert_to_original(out["label"], out["original_size"])
    assert back.shape == (1, h, w)
    original = torch.from_numpy(np.asarray(Image.open(item["label"])) > 0).float()
    if min(h, w) >= 32:
        iou = (back[0] * original).sum() / ((back[0] + original) > 0).sum()
        assert iou > 0.9
    scale = 256 / max(h, w)  # rows are the image height: below/right of the resized image is padding
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    assert out["image"][0, rh:].abs().sum() == 0 and out["image"][0, :, rw:].abs().sum() == 0
    assert out["image"][0, :rh, :rw].abs().sum() > 0


def test_orientation_rows_are_height(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _pair(tmp_path, helpers, 128, 64, box=(0, 0, 64, 32))  # lesion on the top quarter, full width
    out = get_transforms("eval")(item)
    assert out["box"].tolist() == [0.0, 0.0, 128.0, 64.0]
    assert out["label"][0, :64, :128].all() and not out["label"][0, 64:].any()


def test_box_and_metadata_placeholders(tmp_path: Path, helpers: SimpleNamespace) -> None:
    out = get_transforms("eval")(_pair(tmp_path, helpers, 100, 50, box=(10, 20, 5, 30)))
    assert out["box"].dtype == torch.float32 and out["box"].shape == (4,)
    assert torch.allclose(out["box"], torch.tensor([10, 20, 15, 50]) * 2.56, atol=2.6)
    assert out["birads"] == -1 and out["histology"] == "" and out["device"] == "" and "bbox" not in out
    assert out["text"] == "a benign lesion" and out["id"] == "im" and out["diagnosis"] == 0
    assert mask_to_box(torch.zeros(1, 8, 8), 8).tolist() == [0, 0, 8, 8]
    assert mask_to_box(None, 16).tolist() == [0, 0, 16, 16]


def test_rgb_rgba_to_luminance(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _pair(tmp_path, helpers, 40, 60)
    gray = np.asarray(Image.open(item["image"]))
    expected = get_transforms("eval")(item)["image"]
    for mode, channels in (("RGB", 3), ("RGBA", 4)):
        stack = [gray] * 3 + ([np.full_like(gray, 7)] if channels == 4 else [])
        Image.fromarray(np.stack(stack, axis=-1), mode).save(item["image"])
        out = get_transforms("eval")(item)["image"]
        assert out.shape == (1, 256, 256) and torch.allclose(out, expected, atol=1e-2)


def test_constant_image_is_zero_and_nan_is_an_error(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _pair(tmp_path, helpers, 20, 30)
    helpers.save_png(np.full((20, 30), 77), Path(item["image"]))
    assert get_transforms("infer")(item)["image"].abs().sum() == 0
    arr = np.ones((30, 20), np.float32)
    arr[3, 4] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(RadVLSMInputError, match=r"nan\.nii\.gz: contains NaN"):
        get_transforms("infer")({"image": str(tmp_path / "nan.nii.gz")})


def test_volume_and_size_mismatch_are_errors(tmp_path: Path, helpers: SimpleNamespace) -> None:
    nib.save(nib.Nifti1Image(np.zeros((30, 20, 4), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(RadVLSMInputError, match=r"vol\.nii\.gz: has shape \(30, 20, 4\).*2D image is expected"):
        get_transforms("infer")({"image": str(tmp_path / "vol.nii.gz")})
    item = _pair(tmp_path, helpers, 20, 30)
    helpers.save_png(np.zeros((20, 31)), Path(item["label"]))
    with pytest.raises(RadVLSMInputError, match=r"im_mask\.png: is 20x31"):
        get_transforms("eval")(item)


def test_nifti_2d_orientation(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _pair(tmp_path, helpers, 40, 80)
    png = get_transforms("eval")(item)
    arr = np.asarray(Image.open(item["image"])).astype(np.float32)
    nib.save(nib.Nifti1Image(arr.T.copy(), np.eye(4)), tmp_path / "im.nii.gz")  # NIfTI stores x first
    nii = get_transforms("infer")({"image": str(tmp_path / "im.nii.gz")})
    assert nii["original_size"].tolist() == [40, 80]
    assert torch.allclose(nii["image"], png["image"], atol=1e-5)


def test_infer_drops_label(tmp_path: Path, helpers: SimpleNamespace) -> None:
    out = get_transforms("infer")(_pair(tmp_path, helpers, 30, 30))
    assert "label" not in out and out["box"].tolist() == [0, 0, 256, 256]


def test_train_augments_image_and_label_together(tmp_path: Path, helpers: SimpleNamespace) -> None:
    item = _pair(tmp_path, helpers, 120, 160, box=(10, 10, 40, 60))
    transform = get_transforms("train")
    transform.set_random_state(seed=0)
    eval_box = get_transforms("eval")(dict(item))["box"]
    changed = 0
    for _ in range(8):
        out = transform(dict(item))
        image, label = out["image"][0], out["label"][0]
        assert image.shape == (256, 256) and image.min() >= 0 and image.max() <= 1
        assert set(label.unique().tolist()) <= {0.0, 1.0} and label.sum() > 0
        inside, outside = image[label > 0].mean(), image[(label == 0)].mean()
        assert inside < outside  # the dark lesion still lies under the label
        ys, xs = torch.nonzero(label, as_tuple=True)
        assert out["box"].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        changed += int(not torch.equal(out["box"], eval_box))
    assert changed > 0


def test_collates_with_dataloader(tmp_path: Path, helpers: SimpleNamespace) -> None:
    items = [_pair(tmp_path, helpers, 30 + 10 * i, 50 - 5 * i, name=f"im{i}") for i in range(4)]
    items[1]["birads"], items[1]["histology"] = 4, "fibroadenoma"
    loader = DataLoader(Dataset(items, get_transforms("train")), batch_size=4, collate_fn=list_data_collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 1, 256, 256) and batch["label"].shape == (4, 1, 256, 256)
    assert batch["box"].shape == (4, 4) and batch["original_size"].shape == (4, 2)
    assert batch["diagnosis"].tolist() == [0, 0, 0, 0] and batch["birads"].tolist() == [-1, 4, -1, -1]
    assert batch["id"] == ["im0", "im1", "im2", "im3"]


def test_bad_arguments() -> None:
    with pytest.raises(RadVLSMInputError, match="mode"):
        get_transforms("test")
    with pytest.raises(RadVLSMInputError, match="mode"):
        LongestSidePad(256, "bicubic")
    with pytest.raises(RadVLSMInputError, match="modes"):
        LongestSidePadd(["image", "label"], mode=["area"])


def _view_transform():
    from radvlsm.data.transforms import UltrasoundViewd

    return UltrasoundViewd(
        ["image", "label"], "view", "id", seed=0, crop=0.6, zoom_out=0.15, gamma=(0.6, 1.6), contrast=0.25,
        brightness=0.1, speckle=0.3, blur=1.5,
    )  # fmt: skip


def test_views_are_reproducible_keep_the_lesion_and_view_zero_is_the_image() -> None:
    t = _view_transform()
    img = torch.rand(1, 120, 160)
    lab = torch.zeros(1, 120, 160)
    lab[0, 40:70, 90:130] = 1
    item = {"image": img, "label": lab, "id": "bus_0001-l"}
    same = t({**item, "view": 0})
    assert same["image"] is img and same["label"] is lab
    views = [t({**item, "view": v}) for v in (1, 2, 3, 4)]
    again = t({**item, "view": 2})
    torch.testing.assert_close(again["image"], views[1]["image"])
    shapes = set()
    for v in views:
        assert v["image"].shape == v["label"].shape
        assert float(v["image"].min()) >= 0.0 and float(v["image"].max()) <= 1.0
        assert float(v["label"].sum()) == float(lab.sum())  # crops keep the whole lesion; borders add none
        assert v["image"].shape != img.shape or not torch.equal(v["image"], img)
        shapes.add(tuple(v["image"].shape))
    assert len(shapes) > 1  # scale changes the geometry
    other = t({**item, "id": "bus_0002-l", "view": 2})
    assert not torch.equal(other["image"], views[1]["image"])


def test_view_transform_refuses_bad_ranges() -> None:
    from radvlsm.data.transforms import UltrasoundViewd
    from radvlsm.errors import RadVLSMInputError

    with pytest.raises(RadVLSMInputError, match="gamma"):
        UltrasoundViewd(["image"], "view", "id", 0, 0.6, 0.1, (1.5, 0.5), 0.2, 0.1, 0.2, 1.0)
