"""Bad requests become HTTP 4xx answers with the problem in words, never a 500 with a stack trace.

MONAI Label 0.8.5 installs no exception handlers: anything an infer task raises reaches FastAPI, which
answers 500 "Internal Server Error" (except ``HTTPException``, which it answers as given). So the app
raises ``HTTPException`` for what a client got wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

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
