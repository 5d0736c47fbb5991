"""The MONAI Label 0.8.5 workarounds: version guard, offloaded routes, admission queue, shared datastores."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.routing import APIRoute
from label_server import APP_DIR
from lib import monailabel_fixes
from lib.datastores import IMAGE_PATTERNS
from lib.dicomweb import UltrasoundDICOMwebDatastore
from lib.monailabel_fixes.atomic_datastore import AtomicLocalDatastore
from lib.monailabel_fixes.offload import INFER_PATH, SCORING_PATH, InferQueue, install_routes
from lib.options import AppOptions
from monailabel.endpoints import infer, scoring
from PIL import Image

from radvlsm.errors import RadVLSMInputError


def test_a_different_monailabel_version_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert monailabel_fixes.version_matches("0.8.5")
        assert not caplog.records
        assert not monailabel_fixes.version_matches("0.9.0")
    assert "0.9.0" in caplog.text and "0.8.5" in caplog.text


def monailabel_like_app() -> FastAPI:
    app = FastAPI()
    app.include_router(infer.router)
    app.include_router(scoring.router)
    return app


def endpoint_of(app: FastAPI, path: str) -> object:
    """The endpoint of ``POST path`` in the app's routes or, with FastAPI including routers lazily, MONAI Label's."""
    for routes in (app.router.routes, infer.router.routes, scoring.router.routes):
        for route in routes:
            if isinstance(route, APIRoute) and route.path == path and "POST" in route.methods:
                return route.endpoint
    raise AssertionError(f"no POST {path}")


def test_install_routes_swaps_infer_and_scoring_once() -> None:
    app = monailabel_like_app()
    before = {p: endpoint_of(app, p) for p in (INFER_PATH, SCORING_PATH)}
    queue = install_routes(app, threads=2, queue_size=3)
    assert queue is not None and queue.capacity == 5
    for path in (INFER_PATH, SCORING_PATH):
        assert endpoint_of(app, path) is not before[path]
        assert asyncio.iscoroutinefunction(endpoint_of(app, path))
    assert install_routes(app, threads=4, queue_size=9) is queue  # idempotent: one queue per app
    assert install_routes(FastAPI(), 1, 1) is None  # no MONAI Label infer route: left alone


def test_queue_admits_up_to_capacity_then_refuses_and_frees_slots_when_work_ends() -> None:
    queue = InferQueue(threads=1, queue_size=2)
    release = threading.Event()

    async def scenario() -> list:
        admitted = [queue.try_admit() for _ in range(4)]
        assert admitted == [True, True, True, False]
        assert queue.retry_after_s() >= 1
        runs = [asyncio.ensure_future(queue.run(release.wait, 30)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert queue.admitted == 3 and not queue.try_admit()
        release.set()
        results = await asyncio.gather(*runs)
        assert queue.admitted == 0 and queue.try_admit()
        return results

    assert asyncio.run(scenario()) == [True, True, True]
    assert queue.refused == 2


def test_a_failing_job_frees_its_slot_and_reraises() -> None:
    queue = InferQueue(threads=1, queue_size=0)

    def fail() -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        assert queue.try_admit()
        with pytest.raises(RuntimeError, match="boom"):
            await queue.run(fail)

    asyncio.run(scenario())
    assert queue.admitted == 0


@pytest.mark.parametrize(
    ("key", "value"), [("infer_threads", "0"), ("infer_queue_size", "-1"), ("infer_threads", "two")]
)
def test_bad_thread_or_queue_counts_are_refused(key: str, value: str) -> None:
    with pytest.raises(RadVLSMInputError, match=key):
        AppOptions.from_conf(APP_DIR, {key: value})


def test_thread_and_queue_counts_from_conf() -> None:
    options = AppOptions.from_conf(APP_DIR, {"infer_threads": "3", "infer_queue_size": "0"})
    assert (options.infer_threads, options.infer_queue_size) == (3, 0)


def test_dicomweb_labels_go_through_the_name_checks_before_anything_is_sent() -> None:
    store = object.__new__(UltrasoundDICOMwebDatastore)  # no PACS needed: the checks come first
    for image_id, tag in (("../../etc", "final"), ("1.2.840.1", "../x"), ("1.2.840.1", "%2e%2e%2fx")):
        with pytest.raises(HTTPException) as caught:
            store.save_label(image_id, "label.nii.gz", tag, {})
        assert caught.value.status_code == 422


def test_two_datastore_processes_sharing_a_folder_keep_each_others_changes(
    tmp_path: Path, studies_from: Callable[[Path, int], Path]
) -> None:
    studies = str(studies_from(tmp_path / "studies", 2))
    first, second = AtomicLocalDatastore(studies, IMAGE_PATTERNS), AtomicLocalDatastore(studies, IMAGE_PATTERNS)
    images = sorted(first.list_images())
    for store, image_id in zip((first, second), images, strict=True):
        with Image.open(store.get_image_uri(image_id)) as im:
            mask = tmp_path / f"{image_id}.png"
            Image.fromarray(np.zeros((im.height, im.width), np.uint8)).save(mask)
        store.save_label(image_id, str(mask), "final", {"by": image_id})
    first.update_image_info(images[1], {"radvlsm_reliability": 0.5})
    saved = json.loads(Path(first._datastore_config_path).read_text())["objects"]
    assert all("final" in saved[i]["labels"] for i in images), saved
    assert saved[images[1]]["image"]["info"]["radvlsm_reliability"] == 0.5
