"""The MONAI Label 0.8.5 workarounds: version guard, the offloaded routes and the admission queue."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from label_server import APP_DIR
from lib import monailabel_fixes
from lib.monailabel_fixes.offload import INFER_PATH, SCORING_PATH, InferQueue, install_routes
from lib.options import AppOptions
from monailabel.endpoints import infer, scoring

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
