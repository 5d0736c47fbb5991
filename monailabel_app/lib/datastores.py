"""Datastores: a local folder of 2D images, or a DICOMweb server (e.g. Orthanc) filtered to ultrasound."""

from __future__ import annotations

import logging
from typing import Any

from dicomweb_client.session_utils import create_session_from_user_pass
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.datastore.local import LocalDatastore

from lib.dicomweb import UltrasoundDICOMwebDatastore
from lib.preannotation import PreannotationDatastore
from lib.slicer_labels import SlicerLabelsDatastore
from radvlsm.data.image_io import STUDY_SUFFIXES

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = tuple(f"*{suffix}" for suffix in STUDY_SUFFIXES)


def local_datastore(studies: str) -> LocalDatastore:
    """A folder of PNG/JPEG/DICOM/NIfTI 2D images (labels under ``labels/``): MONAI Label's local datastore
    with checked names and uploads and crash-safe writes
    (:class:`lib.monailabel_fixes.atomic_datastore.AtomicLocalDatastore`).

    Args:
        studies: the folder.
    """
    logger.info("local datastore %s (%s)", studies, ", ".join(IMAGE_PATTERNS))
    return SlicerLabelsDatastore(  # AtomicLocalDatastore that also takes 3D Slicer's .seg.nrrd labels
        studies,
        extensions=IMAGE_PATTERNS,
        auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
        read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
    )


def dicomweb_datastore(
    url: str, search_filter: dict[str, Any], cache_path: str | None = None
) -> UltrasoundDICOMwebDatastore:
    """A DICOMweb server (Orthanc: ``http://host:8042/dicom-web``), series found with ``search_filter``.

    Credentials, URL prefixes, frame fetching and NIfTI conversion follow MONAI Label's settings
    (``MONAI_LABEL_DICOMWEB_*``); the search filter is the app's (``{"Modality": "US"}`` by default).
    Final labels are stored back as DICOM SEG (:class:`lib.dicomweb.UltrasoundDICOMwebDatastore`).

    Args:
        url: the DICOMweb root URL.
        search_filter: QIDO-RS query, e.g. ``{"Modality": "US"}``.
        cache_path: local cache folder (default MONAI Label's).
    """
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(
            settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
        )
    client = DICOMwebClientX(
        url=url,
        session=session,
        qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
        stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )
    logger.info("DICOMweb datastore %s with search filter %s", url, search_filter)
    cache = cache_path or (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
    return PreannotationDatastore(  # PACS SEGs as labels, pre-annotations ignored (lib.preannotation)
        client=client,
        search_filter=dict(search_filter),
        cache_path=cache,
        fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
        convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI,
    )
