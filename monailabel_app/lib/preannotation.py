"""Pre-annotation: automatic results stored in the PACS as DICOM SEG, corrected in OHIF, trained on.

The route for 2D ultrasound in OHIF (MONAI Label 0.8.5's OHIF panel draws only into volumes, which a
one-image series never has):

1. :func:`preannotate` asks MONAI Label for the next image (``radvlsm_reliability`` strategy), runs
   ``radvlsm_auto`` on it and stores the mask in the PACS as a SEG over the image, marked as a
   pre-annotation (``ContentLabel`` :data:`PREANNOTATION_CONTENT_LABEL`). Its series description
   gives the diagnosis and malignancy probability, its segment is named ``lesion (<diagnosis>)`` and
   its segment description lists each candidate's reliability.
2. The annotator opens the study in OHIF 3.13's segmentation mode (:mod:`lib.ohif_site`), loads that
   SEG (an editable stack labelmap), corrects it with the brush and eraser, renames the segment when
   the diagnosis is wrong, and stores it (*Export* > *DICOM SEG* > *Create new series* > *Save*).
3. :class:`PreannotationDatastore` (MONAI Label's DICOMweb datastore) ignores pre-annotations and
   takes every other SEG over an image (the corrected one, or a label saved through MONAI Label) as that
   image's final label: converted to NIfTI in the image's geometry without dcmqi, with the pathology
   from the segment name, so the strategy skips it and ``POST /train/radvlsm`` trains on it.

Command line (run it for as many images as the team will label next)::

    cd monailabel_app && python -m lib.preannotation --server http://monailabel:8000 \\
        --pacs http://pacs:8042/dicom-web --count 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK
from dicomweb_client import DICOMwebClient
from monailabel.client import MONAILabelClient
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from lib.dicom_seg import label_rows_columns, label_to_seg, seg_label
from lib.dicomweb import UltrasoundDICOMwebDatastore

logger = logging.getLogger(__name__)

PREANNOTATION_CONTENT_LABEL = "RADVLSM_AUTO"
STRATEGY = "radvlsm_reliability"
AUTO_TASK = "radvlsm_auto"
PATHOLOGY_WORDS = ("malignant", "benign", "normal")
SEG_SEARCH_TTL_S = 5.0


def _probability(result: dict[str, Any]) -> str:
    value = result.get("malignancy_probability")
    return f"{float(value):.2f}" if isinstance(value, int | float) else "?"


def describe(result: dict[str, Any]) -> tuple[str, str, str]:
    """The pre-annotation's series description, segment name and segment description from a result JSON.

    Example: ``("Rad-VLSM auto: malignant p=0.83", "lesion (malignant)", "reliability 0.91 0.85 0.40")``.
    """
    diagnosis = str(result.get("diagnosis") or "unknown")
    reliabilities = [c.get("reliability") for c in result.get("candidates") or [] if isinstance(c, dict)]
    shown = " ".join(f"{float(r):.2f}" for r in reliabilities if isinstance(r, int | float))
    return (
        f"Rad-VLSM auto: {diagnosis} p={_probability(result)}",
        f"lesion ({diagnosis})",
        f"reliability {shown}" if shown else "reliability n/a",
    )


def preannotation_seg(image: Dataset, mask_hw: np.ndarray, result: dict[str, Any]) -> Dataset:
    """The pre-annotation SEG of ``mask_hw`` (``(rows, columns)``) over ``image``, described from ``result``.

    Raises:
        RadVLSMInputError: an empty mask.
    """
    series_description, name, description = describe(result)
    return label_to_seg(
        image, (np.asarray(mask_hw) > 0).astype(np.uint16), {1: name}, series_description,
        content_label=PREANNOTATION_CONTENT_LABEL, descriptions={1: description},
    )  # fmt: skip


def is_preannotation(seg: Dataset) -> bool:
    """Whether a SEG (instance metadata is enough) is a pre-annotation written by :func:`preannotate`."""
    return str(seg.get("ContentLabel", "")).upper() == PREANNOTATION_CONTENT_LABEL


def pathology_of(segment_names: list[str]) -> str | None:
    """``malignant``/``benign``/``normal`` when a segment's name says so (``lesion (benign)``), else None."""
    for name in segment_names:
        for word in PATHOLOGY_WORDS:
            if re.search(rf"\b{word}\b", name.lower()):
                return word
    return None


def dicomweb_client(url: str) -> DICOMwebClient:
    """A DICOMweb client (credentials from ``RADVLSM_PACS_USERNAME``/``RADVLSM_PACS_PASSWORD`` when set)."""
    session = None
    user, password = os.environ.get("RADVLSM_PACS_USERNAME"), os.environ.get("RADVLSM_PACS_PASSWORD")
    if user and password:
        from dicomweb_client.session_utils import create_session_from_user_pass

        session = create_session_from_user_pass(user, password)
    return DICOMwebClient(url=url.rstrip("/"), session=session)


def find_series(pacs: DICOMwebClient, series_uid: str) -> Dataset:
    """The series' QIDO-RS attributes (study UID included)."""
    found = pacs.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
    if not found:
        raise LookupError(f"series {series_uid} is not in the PACS")
    return Dataset.from_json(found[0])


def preannotate(server: str, pacs_url: str, image_id: str | None = None, strategy: str = STRATEGY) -> dict[str, Any]:
    """Pre-annotate one image: choose it (``strategy``) unless given, run ``radvlsm_auto``, store the SEG.

    Args:
        server: MONAI Label's URL (its datastore is the same PACS).
        pacs_url: the PACS DICOMweb root.
        image_id: the image series UID; None asks ``strategy``.
        strategy: the active-learning strategy.

    Returns:
        ``image`` (series UID), ``study``, ``seg_series``, ``result`` (the task's JSON), or ``{}`` when
        the strategy has no unlabeled image left.
    """
    with tempfile.TemporaryDirectory() as tmp:
        # a private folder for results: MONAI Label names them after its own temporary files, which it
        # deletes after answering; on one machine a client writing to /tmp would lose its copy
        client = MONAILabelClient(server.rstrip("/"), tmpdir=tmp)
        if image_id is None:
            image_id = (client.next_sample(strategy, {}) or {}).get("id")
            if not image_id:
                logger.info("no unlabeled image left")
                return {}
        pacs = dicomweb_client(pacs_url)
        study = str(find_series(pacs, image_id).StudyInstanceUID)
        label_file, params = client.infer(AUTO_TASK, image_id, {"result_extension": ".nii.gz"})
        result = json.loads(params) if isinstance(params, str) else dict(params or {})
        instances = pacs.retrieve_series(study, image_id)
        if len(instances) != 1:
            raise ValueError(f"series {image_id} holds {len(instances)} instances: a 2D ultrasound series holds one")
        image = instances[0]
        mask = label_rows_columns(label_file, int(image.Rows), int(image.Columns))
    seg = preannotation_seg(image, mask, result)
    pacs.store_instances([seg])
    logger.info("pre-annotation %s of %s stored (%s)", seg.SeriesInstanceUID, image_id, seg.SeriesDescription)
    return {"image": image_id, "study": study, "seg_series": str(seg.SeriesInstanceUID), "result": result}


def write_label_like(image_file: str | Path, label_hw: np.ndarray, out_file: str | Path) -> Path:
    """Write a ``(rows, columns)`` label with the geometry of ``image_file`` (any type SimpleITK reads).

    The label gets the image's size, origin, spacing and direction (a one-slice volume stays one), so
    a viewer that places files in patient space (3D Slicer) shows it over the image.

    Raises:
        ValueError: the label's size is not the image's.
    """
    image = SimpleITK.ReadImage(str(image_file))
    size = image.GetSize()  # (columns, rows[, slices])
    if size[:2] != label_hw.shape[::-1] or int(np.prod(size[2:])) != 1:
        raise ValueError(f"label of shape {label_hw.shape} (rows, columns) does not fit the image's size {size}")
    shape = tuple(reversed(size))  # SimpleITK arrays are (slices, rows, columns)
    label = SimpleITK.GetImageFromArray(np.asarray(label_hw, dtype=np.uint8).reshape(shape))
    label.CopyInformation(image)
    SimpleITK.WriteImage(label, str(out_file))
    return Path(out_file)


class PreannotationDatastore(UltrasoundDICOMwebDatastore):
    """The app's DICOMweb datastore, with the PACS's corrected SEGs as final labels and pre-annotations ignored.

    MONAI Label's own DICOMweb datastore counts every SEG over an image as its label (a pre-annotation
    would hide the image from the strategy and train on unchecked pixels) and converts SEGs with dcmqi.
    Here each SEG that is not a pre-annotation and that is not already a local label's copy (labels saved
    through MONAI Label keep their SEG series UID in the label info) is read with pydicom, written as
    NIfTI in the image's geometry and saved as the image's final label, with ``pathology`` from the
    segment name and the SEG series in the label info; the newest SEG of an image wins.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen_segs: set[str] = set()
        self._synced_at = 0.0

    def sync_labels(self) -> None:
        """Import SEGs from the PACS not seen yet (at most every :data:`SEG_SEARCH_TTL_S` seconds)."""
        if time.monotonic() - self._synced_at < SEG_SEARCH_TTL_S:
            return
        self._synced_at = time.monotonic()
        known = {
            str((LocalDatastore.get_label_info(self, image, DefaultLabelTag.FINAL) or {}).get("SeriesInstanceUID"))
            for image in LocalDatastore.get_labeled_images(self, DefaultLabelTag.FINAL)
        }
        images = set(self.list_images())
        found = [Dataset.from_json(s) for s in self._client.search_for_series(search_filters={"Modality": "SEG"})]
        for seg in sorted(found, key=lambda s: (str(s.get("SeriesDate", "")), str(s.get("SeriesTime", "")))):
            uid = str(seg.SeriesInstanceUID)
            if uid in self._seen_segs or uid in known:
                continue
            self._seen_segs.add(uid)
            try:
                self._import_seg(str(seg.StudyInstanceUID), uid, images)
            except Exception as exc:  # one unreadable SEG must not stop the others
                logger.warning("SEG %s not imported: %s", uid, exc)

    def _import_seg(self, study: str, series: str, images: set[str]) -> None:
        instances = self._client.retrieve_series(study, series)
        if len(instances) != 1:
            logger.info("SEG series %s has %d instances: not a 2D label", series, len(instances))
            return
        seg = instances[0]
        if is_preannotation(seg):
            logger.info("SEG %s is a pre-annotation: not a label", series)
            return
        referenced = seg.get("ReferencedSeriesSequence") or []
        image_id = str(referenced[0].SeriesInstanceUID) if referenced else ""
        if image_id not in images:
            logger.info("SEG %s references no listed image (%s)", series, image_id or "none")
            return
        label, names = seg_label(seg)
        info = {
            "SeriesInstanceUID": series,
            "StudyInstanceUID": study,
            "Modality": "SEG",
            "SeriesDescription": str(seg.get("SeriesDescription", "")),
            "segments": list(names.values()),
        }
        pathology = pathology_of(list(names.values()))
        if pathology:
            info["pathology"] = pathology
        with tempfile.TemporaryDirectory() as tmp:
            label_file = write_label_like(self.get_image_uri(image_id), label, Path(tmp) / "label.nii.gz")
            LocalDatastore.save_label(self, image_id, str(label_file), DefaultLabelTag.FINAL, info)
        logger.info("SEG %s imported as the final label of %s (pathology %s)", series, image_id, pathology)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Save a label as the app's DICOMweb datastore does, taking 3D Slicer's ``.seg.nrrd`` files and the
        pathology from segment names too (:mod:`lib.slicer_labels`)."""
        from lib.slicer_labels import is_segmentation_nrrd, plain_label, with_pathology  # it imports this module

        info = with_pathology(label_info)
        if not is_segmentation_nrrd(label_filename):
            return super().save_label(image_id, label_filename, label_tag, info, label_id)
        with tempfile.TemporaryDirectory() as tmp:
            converted = plain_label(label_filename, self.get_image_uri(image_id), tmp)
            return super().save_label(image_id, converted, label_tag, info, label_id)

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Images with a final label (SEGs from the PACS imported first; pre-annotations are not labels)."""
        self.sync_labels()
        return LocalDatastore.get_labeled_images(self, label_tag, labels)

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Listed images without a final label."""
        labeled = set(self.get_labeled_images(DefaultLabelTag.FINAL))
        return [image for image in self.list_images() if image not in labeled]

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The local label file (PACS SEGs are imported as local labels)."""
        return LocalDatastore.get_label_uri(self, label_id, label_tag)

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """Image and label files of every labeled image (no dcmqi conversion)."""
        self.sync_labels()
        return LocalDatastore.datalist(self, full_path)


def main(argv: list[str] | None = None) -> None:
    """Command line: pre-annotate the next ``--count`` images (or the given ``--image`` series)."""
    parser = argparse.ArgumentParser(description="Store Rad-VLSM automatic results in the PACS as DICOM SEG")
    parser.add_argument("--server", required=True, help="MONAI Label URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--pacs", required=True, help="PACS DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--count", type=int, default=1, help="how many images to pre-annotate (strategy order)")
    parser.add_argument("--image", action="append", default=[], help="a series UID to pre-annotate (repeatable)")
    parser.add_argument("--strategy", default=STRATEGY)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    todo: list[str | None] = list(args.image) or [None] * args.count
    for image_id in todo:
        done = preannotate(args.server, args.pacs, image_id, args.strategy)
        if not done:
            break
        logger.info("open %s in OHIF: /segmentation?StudyInstanceUIDs=%s", done["image"], done["study"])


if __name__ == "__main__":
    main()
