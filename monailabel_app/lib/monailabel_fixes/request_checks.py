"""Checks of an infer request before MONAI Label's ``MONAILabelApp.infer`` runs it.

MONAI Label 0.8.5 answers an unknown model with a 500 (``MONAILabelException``), looks an image ID up as
given (``../x`` included) and accepts any existing file path as ``image``. :func:`check_infer_request`
answers 404 for an unknown model or image and 422 for an unsafe ID or a path outside the datastore.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from monailabel.interfaces.datastore import Datastore

from lib.monailabel_fixes.http_errors import client_errors, not_found
from lib.monailabel_fixes.safe_paths import check_name, check_request_file
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)


def check_infer_request(
    request: dict[str, Any], models: Sequence[str], folders: Sequence[str], datastore: Datastore, studies: str
) -> None:
    """Refuse an infer request MONAI Label would mishandle.

    An image (or region ``label``) given as a file path is accepted only when it is a file MONAI Label
    stored from the request's upload or lies inside ``folders``; an image ID must be a plain name that the
    datastore knows.

    Args:
        request: the infer request (``model``, ``image``, optional ``label``).
        models: the app's infer task names.
        folders: folders whose files a request may name (the studies folder, the session store).
        datastore: the datastore that resolves image IDs.
        studies: ``--studies`` (for messages).

    Raises:
        HTTPException: 404 naming the unknown model (and the available ones) or image; 422 for an image
            ID or path that could reach outside the datastore.
    """
    model = request.get("model")
    if not isinstance(model, str) or model not in models:
        raise not_found(f"unknown model {model!r}; available: {', '.join(models)}")
    image, label = request.get("image"), request.get("label")
    with client_errors("infer request"):
        if not isinstance(image, str) or not image:
            raise RadVLSMInputError(f"must be an image ID or an uploaded file, got {image!r}", "image")
        if label is not None and not isinstance(label, str):
            raise RadVLSMInputError(f"must be an uploaded file, got {type(label).__name__}", "label")
        if label:
            check_request_file(label, folders, "label")
        if os.path.exists(image):
            check_request_file(image, folders, "image")
        else:
            check_name(image, "image id")
    if not os.path.exists(image):
        try:
            uri = datastore.get_image_uri(image)
        except Exception as exc:  # a remote datastore fails in its own ways for an unknown ID
            logger.warning("datastore lookup of %s failed: %s", image, exc)
            uri = ""
        if not uri:
            raise not_found(f"image {image!r} is not in the datastore at {studies}")
