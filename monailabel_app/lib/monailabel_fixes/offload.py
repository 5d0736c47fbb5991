"""Infer and synchronous scoring off the event loop, behind a bounded admission queue.

MONAI Label 0.8.5's ``POST /infer/{model}`` is an ``async`` endpoint that calls the synchronous
``run_inference`` directly, so the event loop is blocked for the whole inference: every other request
(``/info/``, ``/datastore/``, OHIF's static files, health checks) waits. ``POST /scoring/{method}?run_sync=true``
does the same. :func:`install_routes` replaces those two routes of ``monailabel.app.app`` with endpoints
taking the same parameters that run MONAI Label's own ``run_inference`` / ``run_method`` in a worker thread
pool (:class:`InferQueue`). At most ``threads + queue_size`` infers are admitted at a time (running or
waiting); beyond that the answer is 503 with a ``Retry-After`` header (seconds, from the recent service
time), so memory stays bounded and every admitted request completes.
"""

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.endpoints import infer as infer_endpoint
from monailabel.endpoints import scoring as scoring_endpoint
from monailabel.endpoints.infer import ResultType
from monailabel.endpoints.user.auth import RBAC, User

logger = logging.getLogger(__name__)

BUSY = 503
INFER_PATH = "/infer/{model}"
SCORING_PATH = "/scoring/{method}"


class InferQueue:
    """A thread pool with admission control: ``threads`` running, at most ``queue_size`` waiting.

    Args:
        threads: worker threads (infers running at once; the network itself runs one prediction at a time).
        queue_size: admitted requests that may wait for a thread; more are refused.
    """

    def __init__(self, threads: int, queue_size: int) -> None:
        if threads < 1 or queue_size < 0:
            raise ValueError(f"need threads >= 1 and queue_size >= 0, got {threads} and {queue_size}")
        self.threads, self.queue_size = threads, queue_size
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="radvlsm-infer")
        self._lock = threading.Lock()
        self.admitted = 0  # running or waiting
        self.refused = 0
        self._service_s = 5.0  # running mean of one infer's time (Retry-After)

    @property
    def capacity(self) -> int:
        """Requests admitted at most (running plus waiting)."""
        return self.threads + self.queue_size

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the time to drain the current queue, at least 1."""
        return max(1, math.ceil(self._service_s * self.admitted / self.threads))

    def try_admit(self) -> bool:
        """Count one more admitted request, unless the queue is full."""
        with self._lock:
            if self.admitted >= self.capacity:
                self.refused += 1
                return False
            self.admitted += 1
            return True

    def _done(self, seconds: float) -> None:
        with self._lock:
            self.admitted -= 1
            self._service_s = 0.8 * self._service_s + 0.2 * seconds

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker thread (the caller was admitted); its slot is freed when it ends.

        The slot is released by the thread itself, so a client that disconnects cannot free a slot whose
        work still runs.
        """

        def job() -> Any:
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._done(time.perf_counter() - started)

        try:
            future = self.executor.submit(job)
        except BaseException:
            self._done(self._service_s)
            raise
        return await asyncio.wrap_future(future)

    def status(self) -> dict[str, int]:
        """Admitted, capacity and refused counts (for logs and tests)."""
        return {"admitted": self.admitted, "capacity": self.capacity, "refused": self.refused}


def busy(queue: InferQueue) -> HTTPException:
    """503 with ``Retry-After`` for a full queue."""
    retry = queue.retry_after_s()
    logger.warning("503: infer queue full (%s); retry after %s s", queue.status(), retry)
    return HTTPException(
        status_code=BUSY,
        detail=f"the server is busy ({queue.capacity} infer requests running or queued); retry in {retry} s",
        headers={"Retry-After": str(retry)},
    )


def infer_endpoint_for(queue: InferQueue) -> Callable[..., Any]:
    """``POST /infer/{model}`` with MONAI Label 0.8.5's parameters, run in ``queue``'s threads."""

    async def api_run_inference(
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        session_id: str = "",
        params: str = Form("{}"),
        file: UploadFile = File(None),
        label: UploadFile = File(None),
        output: Optional[ResultType] = None,  # noqa: UP045 (FastAPI reads these annotations at run time)
        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
    ) -> Any:
        if not queue.try_admit():
            raise busy(queue)
        args = (background_tasks, model, image, session_id, params, file, label, output)
        return await queue.run(infer_endpoint.run_inference, *args)

    return api_run_inference


def scoring_endpoint_for(queue: InferQueue) -> Callable[..., Any]:
    """``POST /scoring/{method}`` with MONAI Label 0.8.5's parameters, run in a worker thread."""

    async def api_run_method(
        method: str,
        params: Optional[dict] = None,  # noqa: UP045
        run_sync: Optional[bool] = False,  # noqa: UP045
        user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
    ) -> Any:
        if not queue.try_admit():
            raise busy(queue)
        return await queue.run(scoring_endpoint.run_method, method, params, run_sync)

    return api_run_method


def _swap_in(router: APIRouter, path: str, method: str, endpoint: Callable[..., Any]) -> bool:
    """Swap the route ``method path`` of ``router`` (if it has it) for one with ``endpoint``, same name and summary."""
    for route in list(router.routes):
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            router.routes.remove(route)
            router.add_api_route(  # public API: FastAPI versions that include routers lazily see the change
                path[len(router.prefix) :],
                endpoint,
                methods=[method],
                name=route.name,
                summary=route.summary,
                responses=route.responses,
            )
            return True
    return False


def _replace_route(app: FastAPI, path: str, method: str, endpoint: Callable[..., Any], router: APIRouter) -> bool:
    """Swap ``method path`` in ``app``: in its own route list (FastAPI copying included routes, as 0.8.5 was
    released with) or else in MONAI Label's endpoint ``router`` (FastAPI versions including routers lazily)."""
    included = any(getattr(r, "original_router", None) is router for r in app.router.routes)
    if _swap_in(app.router, path, method, endpoint) or (included and _swap_in(router, path, method, endpoint)):
        app.openapi_schema = None
        return True
    logger.warning("no %s %s route found in MONAI Label's app; left as it is", method, path)
    return False


def install_routes(app: FastAPI, threads: int, queue_size: int) -> InferQueue | None:
    """Replace MONAI Label's infer and scoring routes with the offloaded ones (idempotent per app).

    Args:
        app: MONAI Label's FastAPI app (``monailabel.app.app``).
        threads: worker threads.
        queue_size: admitted requests that may wait.

    Returns:
        the queue, or None when the infer route was not found.
    """
    existing = getattr(app.state, "radvlsm_infer_queue", None)
    if existing is not None:
        return existing
    queue = InferQueue(threads, queue_size)
    if not _replace_route(app, INFER_PATH, "POST", infer_endpoint_for(queue), infer_endpoint.router):
        return None
    _replace_route(app, SCORING_PATH, "POST", scoring_endpoint_for(queue), scoring_endpoint.router)
    app.state.radvlsm_infer_queue = queue
    logger.info(
        "infer and scoring run in %d worker thread(s) with %d queued at most (503 beyond); the event loop stays free",
        threads,
        queue_size,
    )
    return queue
