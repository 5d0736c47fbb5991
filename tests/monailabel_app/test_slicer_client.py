"""3D Slicer's path through the app, driven by ``monailabel.client.MONAILabelClient`` as the Slicer extension drives it.

What the extension (``plugins/slicer/MONAILabel/MONAILabel.py`` in MONAI Label) does, and so what runs here:
*Next Sample* calls ``next_sample(strategy)`` and loads the image file from the datastore; *Run* calls
``infer`` with ``result_extension: .nrrd`` and ``result_dtype: uint8`` and pushes the NRRD into the scene
in its own geometry; clicks go as IJK indices of the volume, ``[x, y, 0]`` for a one-slice volume, with
``label`` and ``slice``; a local volume goes up as a session (``create_session`` of the volume saved as
NIfTI); *Submit Label* calls ``save_label`` with ``{"label_info": [{"name", "idx"}], "model"}`` and the
labelmap saved as ``.nii.gz`` (default) or the segmentation saved as ``.seg.nrrd`` (overlapping
segments); *Train* calls ``train_start``.

Orientation is checked as Slicer places files, in patient space: each returned label is resampled
(SimpleITK, nearest neighbour) onto the grid of the image as SimpleITK reads it, and compared with the
phantom's truth mask. The server runs the bundle's default network with the shipped ``model.pt`` (as the
end-to-end test does) so that masks lie on the lesion; without the file the module skips.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK
from label_server import ROOT, LabelServer
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from slicer_files import one_slice_nifti, slicer_seg_nrrd

pytestmark = pytest.mark.slow

N_IMAGES = 4
WEIGHTS = ROOT / "bundles" / "radvlsm_breast_us" / "models" / "model.pt"
SLICER_INFER = {"result_extension": ".nrrd", "result_dtype": "uint8"}
TRAIN_REQUEST = {"max_epochs": 1, "epochs_align": 1, "epochs_fusion": 2, "val_split": 0}
TRAIN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, studies_from: Callable[[Path, int], Path]) -> Path:
    return studies_from(tmp_path_factory.mktemp("slicer-studies"), N_IMAGES)


@pytest.fixture(scope="module")
def server(studies: Path, tmp_path_factory: pytest.TempPathFactory, label_server: Callable) -> Iterator[LabelServer]:
    if not WEIGHTS.is_file():
        pytest.skip(f"needs the shipped weights {WEIGHTS} (masks must lie on the lesion)")
    work = tmp_path_factory.mktemp("slicer-server")
    (work / "models").mkdir()
    shutil.copy(WEIGHTS, work / "models" / "model.pt")
    with label_server(studies, work, {"device": "cpu"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: LabelServer, tmp_path_factory: pytest.TempPathFactory) -> MONAILabelClient:
    return MONAILabelClient(server.url, tmpdir=str(tmp_path_factory.mktemp("slicer-client")))


@pytest.fixture(scope="module")
def pathology(phantom_dir: Path) -> dict[str, str]:
    with open(phantom_dir / "bus_data.csv", newline="") as f:
        return {row["ID"]: row["Pathology"] for row in csv.DictReader(f)}


def truth_of(phantom_dir: Path, image_id: str) -> np.ndarray:
    """The phantom's truth mask ``(rows, columns)`` of an image, as SimpleITK reads the PNG."""
    mask = SimpleITK.ReadImage(str(phantom_dir / "Masks" / f"{image_id.replace('bus_', 'mask_', 1)}.png"))
    return SimpleITK.GetArrayFromImage(mask).reshape(mask.GetSize()[1], mask.GetSize()[0]) > 0


def shown_over(label_file: str | Path, image_file: str | Path) -> np.ndarray:
    """The label as a viewer placing both files in patient space shows it over the image: ``(rows, columns)``."""
    image = SimpleITK.ReadImage(str(image_file))
    label = SimpleITK.ReadImage(str(label_file))
    if label.GetDimension() != image.GetDimension():  # a one-slice volume over a 2D image: its first slice
        label = label[:, :, 0] if label.GetDimension() == 3 else SimpleITK.JoinSeries(label)
    resampled = SimpleITK.Resample(label, image, SimpleITK.Transform(), SimpleITK.sitkNearestNeighbor, 0)
    return SimpleITK.GetArrayFromImage(resampled).reshape(image.GetSize()[1], image.GetSize()[0])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def test_next_sample_follows_the_reliability_strategy(server: LabelServer, client: MONAILabelClient) -> None:
    info = client.info()
    assert {"radvlsm_auto", "radvlsm_interactive"} <= set(info["models"])
    assert "radvlsm_reliability" in info["strategies"]
    server.request("POST", "/scoring/radvlsm_reliability", params={"run_sync": "true"}, json={}).raise_for_status()
    objects = client.datastore()["objects"]
    scores = {k: v["image"]["info"]["radvlsm_reliability"] for k, v in objects.items()}
    sample = client.next_sample("radvlsm_reliability", {})
    assert sample["id"] == min(scores, key=lambda k: (scores[k], k))


def test_auto_result_as_nrrd_lies_on_the_lesion_as_slicer_shows_it(
    client: MONAILabelClient, studies: Path, phantom_dir: Path
) -> None:
    image_id = "bus_0001-l"
    result_file, params = client.infer("radvlsm_auto", image_id, dict(SLICER_INFER))
    assert result_file.endswith(".nrrd")
    label = SimpleITK.ReadImage(result_file)
    png = SimpleITK.ReadImage(str(studies / f"{image_id}.png"))
    assert label.GetSize()[:2] == png.GetSize()[:2] and int(np.prod(label.GetSize()[2:])) == 1
    assert label.GetPixelID() == SimpleITK.sitkUInt8
    shown = shown_over(result_file, studies / f"{image_id}.png")
    score = dice(shown > 0, truth_of(phantom_dir, image_id))
    assert score > 0.6, f"the mask Slicer shows misses the lesion (Dice {score:.3f}): orientation or geometry"
    result = json.loads(params) if isinstance(params, str) else params
    assert result["diagnosis"] in ("benign", "malignant")
    assert result["image_size"] == [png.GetSize()[1], png.GetSize()[0]]


def test_clicks_as_slicer_sends_them(client: MONAILabelClient, studies: Path, phantom_dir: Path) -> None:
    image_id = "bus_0002-l"
    truth = truth_of(phantom_dir, image_id)
    rows, cols = np.nonzero(truth)
    ijk = [round(float(cols.mean())), round(float(rows.mean())), 0]  # Slicer's RAS -> IJK of the one-slice volume
    params = {"label": "lesion", "foreground": [ijk], "background": [], "slice": 0, **SLICER_INFER}
    result_file, _ = client.infer("radvlsm_interactive", image_id, params)
    score = dice(shown_over(result_file, studies / f"{image_id}.png") > 0, truth)
    assert score > 0.6, f"one click at the lesion centre (IJK {ijk}) gives Dice {score:.3f}"


def test_a_local_image_uploaded_as_a_one_slice_nifti_session(
    client: MONAILabelClient, phantom_dir: Path, tmp_path: Path
) -> None:
    image_id = "bus_0004-r"  # not in the studies folder: the Slicer user's own volume
    volume = one_slice_nifti(phantom_dir / "Images" / f"{image_id}.png", tmp_path / "volume.nii.gz")
    session = client.create_session(str(volume))
    assert session.get("session_id")
    result_file, _ = client.infer("radvlsm_auto", image_id, dict(SLICER_INFER), session_id=session["session_id"])
    label = SimpleITK.ReadImage(result_file)
    assert label.GetSize() == SimpleITK.ReadImage(str(volume)).GetSize()
    score = dice(shown_over(result_file, volume) > 0, truth_of(phantom_dir, image_id))
    assert score > 0.6, f"the session's mask misses the lesion (Dice {score:.3f})"


@pytest.mark.parametrize(("image_id", "extension"), [("bus_0001-l", ".nii.gz"), ("bus_0001-r", ".seg.nrrd")])
def test_submit_label_as_slicer_saves_it(
    server: LabelServer,
    client: MONAILabelClient,
    studies: Path,
    phantom_dir: Path,
    pathology: dict[str, str],
    tmp_path: Path,
    image_id: str,
    extension: str,
) -> None:
    truth = truth_of(phantom_dir, image_id)
    name = f"lesion ({pathology[image_id]})"  # the segment's name carries the pathology for training
    if extension == ".seg.nrrd":
        label_file = slicer_seg_nrrd(truth, name, tmp_path / "label.seg.nrrd")
    else:
        mask_png = phantom_dir / "Masks" / f"{image_id.replace('bus_', 'mask_', 1)}.png"
        label_file = one_slice_nifti(mask_png, tmp_path / "label.nii.gz", as_label=True)
    params = {"label_info": [{"name": name, "idx": 1}], "model": "radvlsm_auto"}
    try:
        client.save_label(image_id, str(label_file), params=params)
    except MONAILabelClientException as exc:
        pytest.fail(f"save_label of a {extension} label refused: {exc.msg}\n{server.log_tail()}")
    stored = client.datastore()["objects"][image_id]["labels"]["final"]
    assert stored["info"]["pathology"] == pathology[image_id]
    label_path = studies / "labels" / "final" / stored["info"]["name"]
    shown = shown_over(label_path, studies / f"{image_id}.png") > 0
    assert np.array_equal(shown, truth), f"stored label differs from the submitted one ({(shown != truth).sum()} px)"


def test_training_starts_from_slicer_labels_and_the_new_weights_are_served(
    server: LabelServer, client: MONAILabelClient
) -> None:
    before = (server.model_dir / "model.pt").stat().st_mtime_ns
    started = client.train_start("radvlsm", dict(TRAIN_REQUEST))
    assert started.get("id"), started
    deadline, status = time.monotonic() + TRAIN_TIMEOUT_S, {}
    while time.monotonic() < deadline:
        status = client.train_status()
        if status.get("id") == started["id"] and status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(3)
    assert status.get("status") == "DONE", json.dumps(status)[-3000:] + server.log_tail()
    items = json.loads(sorted(server.work_dir.glob("train/*/datalist.json"))[-1].read_text())["training"]
    assert {"bus_0001-l", "bus_0001-r"} <= {i["id"] for i in items}
    weights = server.model_dir / "model.pt"
    assert weights.stat().st_mtime_ns > before
    _, params = client.infer("radvlsm_auto", "bus_0002-r", dict(SLICER_INFER))
    served = json.loads(params) if isinstance(params, str) else params
    stat = weights.stat()
    assert served["model"]["stamp"] == f"{stat.st_mtime_ns}-{stat.st_size}"
