"""Files written so that a crash at any moment leaves either the old or the new file, never a partial one.

The data goes to a temporary file in the target's own folder (same file system), is flushed and
fsynced, and then renamed over the target with ``os.replace`` (atomic on POSIX); the folder is fsynced
so that the rename itself survives a power cut. A failure removes the temporary file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder`` (no-op where folders cannot be opened, e.g. Windows)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_write(target: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``target``; on a clean exit it replaces ``target`` atomically.

    Args:
        target: the file to (re)write.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        the open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


def atomic_copy(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` to ``target`` atomically (see :func:`atomic_write`)."""
    with open(source, "rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst)
    return Path(target)


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically (see :func:`atomic_write`)."""
    with atomic_write(target, "w") as f:
        f.write(text)
    return Path(target)
