"""The app's workarounds for MONAI Label 0.8.5, in one place (``README.md`` here names what each patches).

:func:`install` is called once from the app's constructor (inside MONAI Label's start-up, when
``monailabel.app.app`` exists): it warns when the installed ``monailabel`` is not the version these were
written for, registers the 422 handlers and, on 0.8.5 only, swaps the blocking infer and scoring routes
for offloaded ones with admission control.
"""

from __future__ import annotations

import logging
import sys

import monailabel

from lib.monailabel_fixes.http_errors import install_handlers
from lib.monailabel_fixes.offload import InferQueue, install_routes

logger = logging.getLogger(__name__)

PATCHED_VERSION = "0.8.5"


def version_matches(version: str | None = None) -> bool:
    """Whether ``version`` (default the installed ``monailabel``'s) is :data:`PATCHED_VERSION`; warn when not."""
    version = version or monailabel.__version__
    if version == PATCHED_VERSION:
        return True
    logger.warning(
        "monailabel %s is installed but the app's workarounds (lib/monailabel_fixes) were written for %s: "
        "the infer route is left as MONAI Label has it; check lib/monailabel_fixes/README.md",
        version,
        PATCHED_VERSION,
    )
    return False


def install(threads: int, queue_size: int, offload: bool = True) -> InferQueue | None:
    """Apply the server-side fixes to MONAI Label's FastAPI app, when this process serves one.

    Args:
        threads: infer worker threads.
        queue_size: admitted infer requests that may wait for a thread.
        offload: replace the blocking routes (``--conf infer_offload false`` keeps MONAI Label's).

    Returns:
        the infer queue, or None when no server app is loaded, the version differs or ``offload`` is off.
    """
    matches = version_matches()
    app = getattr(sys.modules.get("monailabel.app"), "app", None)
    if app is None:
        return None
    install_handlers(app)
    if not matches or not offload:
        return None
    return install_routes(app, threads, queue_size)
