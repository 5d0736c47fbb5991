"""Two MONAI Label replicas sharing the studies folder and the weights folder behind a least-connections proxy.

The part of the README's several-server recipe that runs on loopback: requests through the proxy reach
both replicas and answer as one server would; labels saved through either replica both end up in the
shared datastore (neither overwrites the other's ``datastore_v2.json`` entry) and both replicas list them;
weights published into the shared folder (as training does) are served by every replica without a restart;
``/info/`` is the health check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from label_server import ROOT, TINY_CONF, LabelServer, parse_infer
from load_client import Job, fire
from PIL import Image
from replicas import LeastConnProxy, running_replicas

from radvlsm.models.build import build_radvlsm, trained_state_dict

N_IMAGES = 4


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, studies_from: Callable[[Path, int], Path]) -> Path:
    return studies_from(tmp_path_factory.mktemp("studies"), N_IMAGES)


def publish_weights(models: Path, seed: int) -> None:
    """Tiny weights (encoder included) written next to ``models/model.pt`` and renamed onto it, as training does."""
    network_def = json.loads((ROOT / "bundles/radvlsm_breast_us/configs/inference.json").read_text())["network_def"]
    kwargs = {k: v for k, v in network_def.items() if k != "_target_"}
    kwargs |= {"variant": "tiny", "text_encoder": "tiny", "embed_dim": 32}
    torch.manual_seed(seed)
    models.mkdir(parents=True, exist_ok=True)
    staged = models / "model.pt.staged"
    torch.save(trained_state_dict(build_radvlsm(**kwargs), include_image_encoder=True), staged)
    staged.replace(models / "model.pt")


@pytest.fixture(scope="module")
def deployment(
    studies: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LeastConnProxy, list[LabelServer], Path]]:
    work = tmp_path_factory.mktemp("replicas")
    publish_weights(work / "models", seed=0)  # the same network in every replica
    with running_replicas(studies, work, TINY_CONF, 2) as (proxy, servers):
        yield proxy, servers, work


def test_requests_through_the_proxy_reach_both_replicas_and_answer_alike(deployment, studies: Path) -> None:
    proxy, servers, _ = deployment
    assert requests.get(f"{proxy.url}/info/", timeout=30).status_code == 200  # the health check
    jobs = [Job("radvlsm_auto", p.stem) for p in sorted(studies.glob("*.png"))] * 2
    outcomes, summary = fire(proxy.url, jobs, 240, servers[0].process.pid)
    assert summary["ok"] == len(jobs), [(o.status, o.error) for o in outcomes if o.status != 200]
    assert all(n > 0 for n in proxy.served), proxy.served
    for outcome in outcomes:
        result, label = parse_infer(outcome.response)
        expected, expected_label = parse_infer(servers[1].infer(outcome.job.model, outcome.job.image))
        assert np.array_equal(label, expected_label)
        assert result["malignancy_probability"] == pytest.approx(expected["malignancy_probability"])


def labels_listed(server: LabelServer) -> set[str]:
    objects = server.request("GET", "/datastore/", params={"output": "all"}).json()["objects"]
    return {image for image, obj in objects.items() if "final" in obj.get("labels", {})}


def test_labels_saved_through_either_replica_are_kept_and_seen_by_both(deployment, studies: Path) -> None:
    _, servers, _ = deployment
    images = sorted(studies.glob("*.png"))[:2]
    for server, image in zip(servers, images, strict=True):  # one label through each replica
        with Image.open(image) as im:
            w, h = im.size
        mask = studies.parent / f"{image.stem}-mask.png"
        label = np.zeros((h, w), np.uint8)
        label[2:10, 2:10] = 1
        Image.fromarray(label).save(mask)
        with open(mask, "rb") as f:
            response = server.request(
                "PUT",
                "/datastore/label",
                params={"image": image.stem},
                data={"params": json.dumps({"pathology": "benign"})},
                files={"label": (mask.name, f, "image/png")},
            )
        assert response.status_code == 200, response.text
    stored = json.loads((studies / "datastore_v2.json").read_text())["objects"]
    assert {i.stem for i in images} <= {k for k, v in stored.items() if "final" in v["labels"]}
    deadline = time.monotonic() + 30
    while any({i.stem for i in images} - labels_listed(s) for s in servers) and time.monotonic() < deadline:
        time.sleep(1)
    for server in servers:
        assert {i.stem for i in images} <= labels_listed(server)


def test_weights_published_to_the_shared_folder_reach_every_replica(deployment, studies: Path) -> None:
    _, servers, work = deployment
    image = sorted(studies.glob("*.png"))[0].stem
    before = [parse_infer(s.infer("radvlsm_auto", image))[0]["model"] for s in servers]
    assert all(m["trained"] for m in before) and len({m["stamp"] for m in before}) == 1, before
    time.sleep(0.05)  # a different modification time
    publish_weights(work / "models", seed=1)
    answers = [parse_infer(s.infer("radvlsm_auto", image)) for s in servers]
    after = [result["model"] for result, _ in answers]
    assert all(m["trained"] and not m["warning"] for m in after), after
    assert len({m["stamp"] for m in after}) == 1 and after[0]["stamp"] != before[0]["stamp"]
    assert np.array_equal(answers[0][1], answers[1][1])
    assert answers[0][0]["malignancy_probability"] == pytest.approx(answers[1][0]["malignancy_probability"])
