"""Image IDs, label tags and request paths checked before any file is read or written.

MONAI Label builds file names from what clients send: ``<studies>/<image id><ext>`` for an uploaded
image, ``<studies>/labels/<tag>/<image id><ext>`` for a label. An ID or tag such as ``../../etc/x``
(or its URL-encoded form ``%2e%2e%2f``) would reach outside the datastore, so every name is checked
here: one plain file-name component, no separators, no ``..``, no control characters, and the final
path inside its folder. Infer requests may also name a file path (MONAI Label's own uploads land in
the system temp folder); only paths inside the allowed folders are accepted.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
UPLOAD_PREFIX = "tmp"  # Python's tempfile names, which MONAI Label's upload endpoints use


def _decoded_forms(name: str) -> list[str]:
    """``name`` and its URL-decoded forms (up to three rounds: ``%252e`` -> ``%2e`` -> ``.``)."""
    forms = [name]
    for _ in range(3):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def check_name(name: object, what: str) -> str:
    """A client-given image ID or label tag, checked to be one plain file-name component.

    Args:
        name: the ID or tag as received.
        what: ``"image id"``, ``"label tag"`` ... (used in messages).

    Returns:
        ``name`` unchanged.

    Raises:
        RadVLSMInputError: empty, too long, not a string, or with a path separator, ``..``, a leading dot,
            a control character or an encoded form of these.
    """
    if not isinstance(name, str) or not name.strip():
        raise RadVLSMInputError(f"must be a non-empty string, got {name!r}", what)
    if len(name) > MAX_NAME_CHARS:
        raise RadVLSMInputError(f"is longer than {MAX_NAME_CHARS} characters", what)
    for form in _decoded_forms(name):
        if any(sep in form for sep in ("/", "\\")) or form.startswith(".") or ".." in form:
            raise RadVLSMInputError(
                f"{name!r} is not a plain name (path separators, '..' and leading dots are refused)", what
            )
        if any(ord(c) < 32 for c in form):
            raise RadVLSMInputError(f"{name!r} has control characters", what)
    return name


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` (links resolved) lies inside ``folder``."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, root]) == root


def check_inside(path: str | Path, folder: str | Path, what: str) -> Path:
    """``path`` when it lies inside ``folder``.

    Raises:
        RadVLSMInputError: the path resolves outside the folder.
    """
    if not inside(path, folder):
        logger.warning("refused %s %s: outside %s", what, path, folder)
        raise RadVLSMInputError(f"resolves outside the datastore folder {folder}", what)
    return Path(path)


def is_upload(path: str | Path) -> bool:
    """Whether ``path`` is a file MONAI Label stored from a request's upload (``<tmp>/tmp*``)."""
    real = os.path.realpath(path)
    tmp = os.path.realpath(tempfile.gettempdir())
    return os.path.basename(real).startswith(UPLOAD_PREFIX) and os.path.dirname(real) == tmp


def check_request_file(path: str, folders: Iterable[str | Path], what: str) -> str:
    """A file path given in an infer request: allowed only as an upload or inside one of ``folders``.

    Args:
        path: the path as received.
        folders: folders whose files may be named (the datastore's).
        what: ``"image"`` or ``"label"`` (used in messages).

    Raises:
        RadVLSMInputError: the path is neither an upload nor inside the allowed folders.
    """
    if is_upload(path) or any(inside(path, f) for f in folders):
        return path
    logger.warning("refused %s path %s: not an upload and not in the datastore", what, path)
    raise RadVLSMInputError(
        "is a file path outside the datastore; give an image ID of the datastore or upload the file", what
    )
