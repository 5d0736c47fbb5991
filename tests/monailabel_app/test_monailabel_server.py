"""The app over HTTP, as OHIF and 3D Slicer drive it: one real server (tiny network) for the module.

Order matters and follows an annotation session: look at the server, pre-annotate, click, ask the
active-learning strategy for the next image, save labels, fine-tune, infer with the new weights.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from label_server import TINY_CONF, LabelServer, parse_infer
from PIL import Image

N_IMAGES = 6
TRAIN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, studies_from: Callable[[Path, int], Path]) -> Path:
    """Six phantom images, an unreadable ``broken.png`` and a 3D ``volume.nii.gz``."""
    folder = studies_from(tmp_path_factory.mktemp("studies"), N_IMAGES)
    (folder / "broken.png").write_bytes(b"this is not an image" * 20)
    volume = np.random.default_rng(0).random((40, 30, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / "volume.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def server(studies: Path, tmp_path_factory: pytest.TempPathFactory, label_server: Callable) -> Iterator[LabelServer]:
    with label_server(studies, tmp_path_factory.mktemp("server"), TINY_CONF) as running:
        yield running


def image_size(studies: Path, image_id: str) -> tuple[int, int]:
    with Image.open(studies / f"{image_id}.png") as im:
        return im.height, im.width


def test_info_lists_the_three_tasks_trainer_and_strategies(server: LabelServer) -> None:
    info = server.request("GET", "/info/").json()
    models = info["models"]
    assert {k: v["type"] for k, v in models.items()} == {
        "radvlsm_auto": "segmentation",
        "radvlsm_interactive": "deepgrow",
        "radvlsm_region": "others",
    }
    assert all(m["dimension"] == 2 and m["labels"] == {"lesion": 1} for m in models.values())
    assert "radvlsm" in info["trainers"]
    assert {"radvlsm_reliability", "random", "first"} <= set(info["strategies"])
    assert "radvlsm_reliability" in info["scoring"]
    assert info["labels"] == ["lesion"]


def test_auto_returns_a_mask_of_the_image_size_and_the_diagnosis(server: LabelServer, studies: Path) -> None:
    result, label = parse_infer(server.infer("radvlsm_auto", "bus_0001-l"))
    assert label is not None and label.shape == image_size(studies, "bus_0001-l")
    assert set(np.unique(label)) <= {0, 1}
    assert result["diagnosis"] in ("benign", "malignant")
    assert 0 <= result["malignancy_probability"] <= 1
    assert 0 <= result["visual_malignancy_probability"] <= 1
    assert result["candidates"] and all(len(c["box"]) == 4 and "reliability" in c for c in result["candidates"])
    assert result["radiomics"] and result["prompt_mode"] == "automatic"
    assert result["image_size"] == list(image_size(studies, "bus_0001-l"))
    assert result["model"]["trained"] is False and "no trained weights" in result["model"]["warning"]


def test_interactive_points_reuse_the_cached_embedding(server: LabelServer, studies: Path) -> None:
    h, w = image_size(studies, "bus_0002-l")
    clicks = {"foreground": [[w // 2, h // 2, 0]], "background": [[5, 5, 0]]}
    first, label = parse_infer(server.infer("radvlsm_interactive", "bus_0002-l", clicks))
    again, _ = parse_infer(server.infer("radvlsm_interactive", "bus_0002-l", {"foreground": [[w // 2, h // 2]]}))
    assert label is not None and label.shape == (h, w)
    assert first["embedding_cached"] is False and again["embedding_cached"] is True
    assert first["prompt_mode"] == "points" and first["candidates"] == []
    assert first["prompts"]["points"] == [[w // 2 + 0.5, h // 2 + 0.5], [5.5, 5.5]]
    assert first["prompts"]["point_labels"] == [1, 0]


def test_interactive_with_a_roi(server: LabelServer, studies: Path) -> None:
    h, w = image_size(studies, "bus_0002-l")
    roi = [w // 4, h // 4, 3 * w // 4, 3 * h // 4]
    result, label = parse_infer(server.infer("radvlsm_interactive", "bus_0002-l", {"roi": roi}))
    assert label is not None and label.shape == (h, w)
    assert result["prompt_mode"] == "box" and result["prompts"]["box"] == [float(v) for v in roi]
    both, _ = parse_infer(
        server.infer("radvlsm_interactive", "bus_0002-l", {"roi": roi, "foreground": [[w // 2, h // 2]]})
    )
    assert both["prompt_mode"] == "points+box"


def test_region_recognition_from_a_box_a_mask_and_a_click(server: LabelServer, phantom_dir: Path) -> None:
    boxed, _ = parse_infer(server.infer("radvlsm_region", "bus_0001-r", {"roi": [40, 30, 170, 120]}))
    masked, label = parse_infer(
        server.infer("radvlsm_region", "bus_0001-r", label=phantom_dir / "Masks" / "mask_0001-r.png")
    )
    clicked, _ = parse_infer(server.infer("radvlsm_region", "bus_0001-r", {"foreground": [[100, 70]]}))
    for result in (boxed, masked, clicked):
        assert result["method"] == "feature-level-region-prompt"
        assert 0 <= result["malignancy_probability"] <= 1
        assert abs(sum(result["zero_shot"].values()) - 1) < 1e-4
        assert set(result["descriptors"]) >= {"shape", "margin", "posterior_features"}
        assert set(result["image_zero_shot"]) == {"benign", "malignant"} == set(result["image_zero_shot_prompted"])
        assert 0 <= result["segmentation"]["malignancy_probability"] <= 1
        assert result["radiomics"] and [p["label"] for p in result["prediction"]] == ["benign", "malignant"]
        assert result["prediction"][1]["score"] == result["malignancy_probability"]
    assert [r["prompt_mode"] for r in (boxed, masked, clicked)] == ["box", "mask", "points"]
    assert masked["region"]["mask_area_px"] > 0 and label is not None


@pytest.mark.parametrize(
    ("model", "image", "params", "status", "words"),
    [
        ("radvlsm_auto", "no_such_image", {}, 404, "not in the datastore"),
        ("no_such_model", "bus_0001-l", {}, 404, "unknown model"),
        ("radvlsm_interactive", "bus_0001-l", {"foreground": [[5000, 10]]}, 422, "outside the"),
        ("radvlsm_interactive", "bus_0001-l", {"foreground": [[10, 10, 3]]}, 422, "slice"),
        ("radvlsm_interactive", "bus_0001-l", {"roi": [10, 10, 5]}, 422, "roi"),
        ("radvlsm_interactive", "bus_0001-l", {}, 422, "foreground point or a roi"),
        ("radvlsm_region", "bus_0001-l", {}, 422, "mask (label upload), a roi box or foreground clicks"),
        ("radvlsm_auto", "broken", {}, 422, "not a readable image"),
        ("radvlsm_auto", "volume", {}, 422, "3D volume"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(
    server: LabelServer, model: str, image: str, params: dict, status: int, words: str
) -> None:
    response = server.infer(model, image, params)
    assert response.status_code == status, response.text[:1000]
    assert words in response.json()["detail"]
    assert server.alive()


def test_reliability_scoring_and_the_least_reliable_image_first(server: LabelServer) -> None:
    summary = server.request("POST", "/scoring/radvlsm_reliability", params={"run_sync": "true"}, json={}).json()
    assert summary["total"] == N_IMAGES + 2 and summary["failed"] == 2, summary
    objects = server.request("GET", "/datastore/", params={"output": "all"}).json()["objects"]
    infos = {k: v["image"]["info"] for k, v in objects.items()}
    assert "3D volume" in infos["volume"]["radvlsm_score_error"]
    scored = {k: i["radvlsm_reliability"] for k, i in infos.items() if i.get("radvlsm_reliability") is not None}
    assert len(scored) == N_IMAGES and all(0 <= r <= 1 for r in scored.values())
    assert all(0 <= infos[k]["radvlsm_uncertainty"] <= 1 for k in scored)
    chosen = server.request("POST", "/activelearning/radvlsm_reliability", json={}).json()
    assert chosen["id"] == min(scored, key=lambda k: (scored[k], -infos[k]["radvlsm_uncertainty"], k))
    assert chosen["radvlsm_reliability"] == scored[chosen["id"]]
    for strategy in ("random", "first"):
        assert server.request("POST", f"/activelearning/{strategy}", json={}).json()["id"] in infos


def test_saved_labels_train_and_the_new_weights_are_served(
    server: LabelServer, phantom_dir: Path, studies: Path
) -> None:
    with open(phantom_dir / "bus_data.csv", newline="") as f:
        pathology = {row["ID"]: row["Pathology"] for row in csv.DictReader(f)}
    labeled = sorted(p.stem for p in studies.glob("bus_*.png"))[:4]
    for image_id in labeled:
        mask = phantom_dir / "Masks" / image_id.replace("bus_", "mask_")
        info = {"pathology": pathology[image_id], "text": f"a {pathology[image_id]} lesion, oval, circumscribed"}
        with open(mask.with_suffix(".png"), "rb") as f:
            response = server.request(
                "PUT",
                "/datastore/label",
                params={"image": image_id},
                data={"params": json.dumps(info)},
                files={"label": (f"{image_id}.png", f, "image/png")},
            )
        assert response.status_code == 200, response.text
    task = server.request(
        "POST", "/train/radvlsm", json={"max_epochs": 1, "epochs_align": 1, "epochs_fusion": 5, "val_split": 0.25}
    ).json()
    deadline, status = time.monotonic() + TRAIN_TIMEOUT_S, {}
    while time.monotonic() < deadline:
        status = server.request("GET", "/train/").json()
        if status.get("id") == task["id"] and status["status"] in ("DONE", "ERROR"):
            break
        time.sleep(2)
    assert status.get("status") == "DONE", json.dumps(status, indent=1)[-4000:] + server.log_tail()
    weights = server.model_dir / "model.pt"
    assert weights.is_file()
    datalists = sorted(server.work_dir.glob("train/*/datalist.json"))
    items = json.loads(datalists[-1].read_text())["training"]
    assert {i["id"] for i in items} >= set(labeled[:2])
    assert all(i["pathology"] == pathology[i["id"].split("#")[0]] and "lesion" in i["text"] for i in items)
    result, label = parse_infer(server.infer("radvlsm_auto", "bus_0003-l"))
    stat = weights.stat()
    assert result["model"]["trained"] is True and result["model"]["warning"] is None
    assert result["model"]["stamp"] == f"{stat.st_mtime_ns}-{stat.st_size}"
    assert label is not None and label.shape == image_size(studies, "bus_0003-l")


@pytest.mark.parametrize("extension", [".nrrd", ".nii.gz"])
def test_label_formats_viewers_ask_for(server: LabelServer, extension: str) -> None:
    """OHIF's MONAI Label panel and 3D Slicer ask for NRRD labels; NIfTI stays available."""
    response = server.infer("radvlsm_auto", "bus_0001-l", {"result_extension": extension})
    assert response.status_code == 200, response.text[:500]
