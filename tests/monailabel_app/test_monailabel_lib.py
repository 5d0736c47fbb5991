"""The app's building blocks without a server: prompts, image reading, settings, training datalist,
strategy, hot-reloaded weights and the DICOMweb datastore.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from label_server import APP_DIR, ROOT, TINY_CONF
from lib.activelearning.reliability import LeastReliable
from lib.bundle_model import BundleModel
from lib.datastores import dicomweb_datastore, local_datastore
from lib.images import label_extension, load_image_2d
from lib.options import AppOptions, selected_models
from lib.prompts import parse_points, parse_roi
from lib.trainers.datalist import labeled_items, split_items
from lib.trainers.radvlsm import RadVLSMTrainTask
from PIL import Image

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import trained_state_dict


def test_points_become_pixel_centres_and_bad_points_are_named() -> None:
    assert parse_points([[3, 4, 0], [0, 0]], "foreground", (10, 20)) == [[3.5, 4.5], [0.5, 0.5]]
    assert parse_points("[[1, 2]]", "background", (10, 20)) == [[1.5, 2.5]]
    assert parse_points(None, "background", (10, 20)) == []
    with pytest.raises(RadVLSMInputError, match=r"foreground: point \[20, 4\] lies outside the 20x10 image"):
        parse_points([[20, 4]], "foreground", (10, 20))
    with pytest.raises(RadVLSMInputError, match="slice 2"):
        parse_points([[1, 1, 2]], "foreground", (10, 20))
    with pytest.raises(RadVLSMInputError, match=r"\[x, y\]"):
        parse_points([[1]], "foreground", (10, 20))


def test_roi_is_clipped_to_the_image_and_checked() -> None:
    assert parse_roi([-5, 2, 30, 8, 0, 0], (10, 20)) == [0.0, 2.0, 20.0, 8.0]
    assert parse_roi([], (10, 20)) is None
    with pytest.raises(RadVLSMInputError, match="outside"):
        parse_roi([25, 2, 30, 8], (10, 20))
    with pytest.raises(RadVLSMInputError, match="no area"):
        parse_roi([5, 5, 5, 8], (10, 20))


def test_images_are_read_as_2d_gray_and_labels_go_back_in_file_geometry(tmp_path: Path) -> None:
    rgb = np.zeros((12, 17, 3), np.uint8)
    rgb[2:5, 3:9] = 200
    Image.fromarray(rgb).save(tmp_path / "a.jpg")
    image = load_image_2d(tmp_path / "a.jpg")
    assert image.size_hw == (12, 17) and image.spatial_shape == (17, 12)
    assert image.gray[3, 4] > 100 and image.gray[10, 15] < 20
    mask = np.zeros((12, 17), np.uint8)
    mask[1, 2] = 1
    assert image.to_file_geometry(mask)[2, 1] == 1
    assert label_extension(str(tmp_path / "a.jpg")) == ".png" and label_extension("x.dcm") == ".nii.gz"
    nib.save(nib.Nifti1Image(np.ones((17, 12, 1), np.float32), np.eye(4)), str(tmp_path / "b.nii.gz"))
    flat = load_image_2d(tmp_path / "b.nii.gz")
    assert flat.size_hw == (12, 17) and flat.to_file_geometry(mask).shape == (17, 12, 1)
    nib.save(nib.Nifti1Image(np.ones((17, 12, 4), np.float32), np.eye(4)), str(tmp_path / "c.nii.gz"))
    with pytest.raises(RadVLSMInputError, match="3D volume"):
        load_image_2d(tmp_path / "c.nii.gz")
    (tmp_path / "d.png").write_bytes(b"garbage")
    with pytest.raises(RadVLSMInputError, match="not a readable image"):
        load_image_2d(tmp_path / "d.png")


def test_options_default_to_the_repository_bundle_and_parse_overrides(tmp_path: Path) -> None:
    options = AppOptions.from_conf(APP_DIR, {"network_def#embed_dim": "32", "network_def#variant": "tiny"})
    assert options.bundle_path == ROOT / "bundles" / "radvlsm_breast_us"
    assert options.weights_path == options.bundle_path / "models" / "model.pt"
    assert options.network_overrides == {"network_def#embed_dim": 32, "network_def#variant": "tiny"}
    assert options.search_filter == {"Modality": "US"} and options.device is None
    assert selected_models({"models": "radvlsm"}) == ["radvlsm"] == selected_models({})
    with pytest.raises(RadVLSMInputError, match="this app has: all, radvlsm"):
        selected_models({"models": "spleen"})
    with pytest.raises(RadVLSMInputError, match="not a bundle folder"):
        AppOptions.from_conf(APP_DIR, {"bundle": str(tmp_path)})


@pytest.fixture
def datastore(tmp_path: Path, phantom_dir: Path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for image in sorted((phantom_dir / "Images").glob("*.png"))[:5]:
        (studies / image.name).write_bytes(image.read_bytes())
    return local_datastore(str(studies))


def save_label(datastore, phantom_dir: Path, image_id: str, info: dict) -> None:
    mask = phantom_dir / "Masks" / (image_id.replace("bus_", "mask_") + ".png")
    datastore.save_label(image_id, str(mask), "final", info)


def test_training_items_carry_pathology_and_text_from_the_label_info(datastore, phantom_dir: Path) -> None:
    save_label(datastore, phantom_dir, "bus_0001-l", {"pathology": "Benign", "text": "oval cyst"})
    save_label(datastore, phantom_dir, "bus_0001-r", {"diagnosis": 1})
    save_label(datastore, phantom_dir, "bus_0002-l", {})  # no pathology: left out
    items = labeled_items(datastore)
    assert [(i["id"], i["pathology"]) for i in items] == [("bus_0001-l", "benign"), ("bus_0001-r", "malignant")]
    assert items[0]["text"] == "oval cyst" and Path(items[0]["label"]).is_file()
    train, val = split_items(items, 0.2)
    assert [i["id"] for i in train] == ["bus_0001-l", "bus_0001-r"]
    assert [i["id"] for i in val] == ["bus_0001-l#val", "bus_0001-r#val"]
    with pytest.raises(RadVLSMInputError, match="at least 2"):
        split_items(items[:1], 0.2)


def test_trainer_maps_the_request_onto_the_bundle_ids(tmp_path: Path) -> None:
    options = AppOptions.from_conf(APP_DIR, {**TINY_CONF, "model_dir": str(tmp_path / "m"), "work_dir": str(tmp_path)})
    task = RadVLSMTrainTask(options, {})
    items = [{"image": f"/x/{i}.png", "label": f"/y/{i}.png", "id": str(i), "pathology": "benign"} for i in range(5)]
    task._request = {"epochs_align": 2, "epochs_fusion": 7}
    overrides = {
        "bundle_root": str(options.bundle_path),
        "device": "cpu",
        "train#trainer#max_epochs": 4,
        "train#dataset#data": items[:4],
        "validate#dataset#data": items[4:],
        "train#handlers": [],
    }
    task._update_overrides(overrides)
    assert not any(k.startswith(("train#", "validate#")) for k in overrides)
    assert (overrides["epochs_align"], overrides["epochs_segment"], overrides["epochs_fusion"]) == (2, 4, 7)
    assert overrides["network_def#variant"] == "tiny" and "network" not in overrides  # no model.pt yet
    split = json.loads(Path(overrides["split_file"]).read_text())
    assert split["training"] == ["0", "1", "2", "3"] and split["validation"] == ["4"]
    assert overrides["model_path"].startswith(str(tmp_path)) and "batch_size" not in overrides  # the bundle's
    assert {"max_epochs", "epochs_align", "epochs_fusion", "val_split"} <= set(task.config())


def test_least_reliable_unlabeled_image_first(datastore, phantom_dir: Path) -> None:
    save_label(datastore, phantom_dir, "bus_0001-l", {"pathology": "benign"})
    scores = {"bus_0001-r": 0.4, "bus_0002-l": 0.2, "bus_0002-r": 0.2}
    for image_id, r in scores.items():
        datastore.update_image_info(image_id, {"radvlsm_reliability": r, "radvlsm_uncertainty": r / 2})
    datastore.update_image_info("bus_0003-l", {"radvlsm_score_error": "unreadable"})
    strategy = LeastReliable()
    assert strategy({"strategy": "radvlsm_reliability"}, datastore)["id"] == "bus_0002-l"
    served = {"radvlsm_reliability": {"ts": int(time.time())}}
    datastore.update_image_info("bus_0002-l", {"strategy": served})
    assert strategy({"strategy": "radvlsm_reliability"}, datastore)["id"] == "bus_0002-r"


def test_weights_are_reloaded_when_model_pt_appears_or_changes(tmp_path: Path) -> None:
    options = AppOptions.from_conf(APP_DIR, {**TINY_CONF, "model_dir": str(tmp_path)})
    model = BundleModel(options)
    untrained = model.get("cpu")
    assert model.get("cpu") is untrained and model.status("cpu")["trained"] is False
    state = trained_state_dict(untrained.model)
    state["diagnosis_head.net.0.bias"] = torch.full_like(state["diagnosis_head.net.0.bias"], 0.25)
    torch.save(state, options.weights_path)
    trained = model.get("cpu")
    assert trained is not untrained and model.status("cpu")["trained"] is True
    assert torch.allclose(trained.model.diagnosis_head.net[0].bias, torch.tensor(0.25))
    options.weights_path.write_bytes(b"corrupt")
    assert model.get("cpu") is trained and "still serving the previous weights" in model.status("cpu")["warning"]


def test_dicomweb_datastore_searches_ultrasound_series(tmp_path: Path) -> None:
    store = dicomweb_datastore("http://127.0.0.1:9/dicom-web", {"Modality": "US"}, cache_path=str(tmp_path))
    assert store._search_filter == {"Modality": "US"} and store.name() == "http://127.0.0.1:9/dicom-web"
