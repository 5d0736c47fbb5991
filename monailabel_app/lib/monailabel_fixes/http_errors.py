"""Bad requests become HTTP 4xx answers with the problem in words, never a 500 with a stack trace.

MONAI Label 0.8.5 installs no exception handlers: anything an infer task raises reaches FastAPI, which
answers 500 "Internal Server Error" (except ``HTTPException``, which it answers as given). So the app
raises ``HTTPException`` for what a client got wrong. Some requests fail inside MONAI Label's own
endpoint code before the app sees them (``params`` that is not JSON, or JSON that is not an object);
:func:`install_handlers` registers handlers that answer those with 422 too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

UNPROCESSABLE = 422
NOT_FOUND = 404


def not_found(message: str) -> HTTPException:
    """A 404 with ``message`` (logged)."""
    logger.warning("404: %s", message)
    return HTTPException(status_code=NOT_FOUND, detail=message)


@contextmanager
def client_errors(task: str) -> Iterator[None]:
    """Turn :class:`RadVLSMInputError` raised inside the block into a 422 naming the task and the problem.

    Args:
        task: the infer task's name, prefixed to the message.
    """
    try:
        yield
    except RadVLSMInputError as exc:
        message = f"{task}: {exc}"
        logger.warning("422: %s", message)
        raise HTTPException(status_code=UNPROCESSABLE, detail=message) from exc


def _raised_in_endpoint(exc: BaseException) -> bool:
    """Whether the innermost Python frame of ``exc`` is MONAI Label's endpoint code (request parsing)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and Path(last.tb_frame.f_code.co_filename).parent.name == "endpoints"


async def bad_request_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 for client input MONAI Label's endpoints could not parse or our code refused; else re-raise (500).

    Args:
        request: the request.
        exc: a ``ValueError`` or ``TypeError``.
    """
    client_fault = isinstance(exc, json.JSONDecodeError | RadVLSMInputError) or _raised_in_endpoint(exc)
    if not client_fault:
        raise exc
    message = f"bad request to {request.url.path}: {type(exc).__name__}: {exc}"
    if isinstance(exc, json.JSONDecodeError):
        message = f"bad request to {request.url.path}: a form field is not valid JSON ({exc})"
    logger.warning("422: %s", message)
    return JSONResponse(status_code=UNPROCESSABLE, content={"detail": message})


def install_handlers(app: FastAPI | None = None) -> bool:
    """Register :func:`bad_request_handler` on MONAI Label's FastAPI app (when this process serves one).

    Args:
        app: the FastAPI app; default ``monailabel.app.app`` when that module is loaded (the server).

    Returns:
        whether handlers were installed.
    """
    if app is None:
        module = sys.modules.get("monailabel.app")
        app = getattr(module, "app", None)
    if app is None:
        return False
    for exc_class in (ValueError, TypeError):
        app.add_exception_handler(exc_class, bad_request_handler)
    app.middleware_stack = None  # rebuilt with the handlers at the next request (the app instance is made at start-up)
    logger.info("422 handlers installed for unparsable request fields")
    return True
