"""Labels as 3D Slicer's MONAI Label extension submits them: ``.seg.nrrd`` segmentations and one-slice volumes.

The extension saves the label in its *file extension* setting: ``.nii.gz`` (default; a one-slice
labelmap volume in the image's geometry) or ``.seg.nrrd`` (its setting for overlapping segments: a
Slicer segmentation file, one layer per group of non-overlapping segments, with ``Segment<N>_*`` header
fields and possibly an extent cropped inside the reference image). The datastore accepts image file
types only, so a ``.seg.nrrd`` is turned here into a plain label in the image's own file type and
geometry: segment ``N`` (Slicer's order, as in its ``label_info`` ``idx = N + 1``) gets value ``N + 1``,
a later segment winning where segments overlap.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import nrrd
import numpy as np

from lib.images import label_extension, load_image_2d
from lib.monailabel_fixes.atomic_datastore import AtomicLocalDatastore
from lib.monailabel_fixes.http_errors import client_errors, not_found
from lib.monailabel_fixes.safe_paths import check_name
from lib.preannotation import pathology_of, write_label_like
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

SEG_NRRD = ".seg.nrrd"


def is_segmentation_nrrd(path: str | Path) -> bool:
    """Whether ``path`` is a Slicer segmentation file (by its name, as MONAI Label keeps the upload's)."""
    return str(path).lower().endswith(SEG_NRRD)


def is_segment_name(value: str) -> bool:
    """Whether a request's ``label`` is a segment's name, as 3D Slicer sends with clicks (``"lesion"``).

    An uploaded label reaches the infer request as the absolute path MONAI Label stored it under, so a
    value without a directory part is never an upload.
    """
    return not os.path.isabs(value) and os.sep not in value and (os.altsep or os.sep) not in value


def _segments(header: dict[str, Any]) -> list[tuple[int, int, int]]:
    """``(index, layer, label value)`` of each ``Segment<N>_`` entry, in ``N`` order."""
    found = sorted({int(m.group(1)) for k in header if (m := re.fullmatch(r"Segment(\d+)_ID", k))})
    return [(n, int(header.get(f"Segment{n}_Layer", 0)), int(header.get(f"Segment{n}_LabelValue", 1))) for n in found]


def segmentation_label(path: str | Path, size_wh: tuple[int, int]) -> np.ndarray:
    """The ``(rows, columns)`` label of a Slicer ``.seg.nrrd`` over a ``size_wh`` (width, height) image.

    Raises:
        RadVLSMInputError: not a readable NRRD, more than one slice, or an extent outside the image.
    """
    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:  # pynrrd raises its own and numpy errors for broken files
        raise RadVLSMInputError(f"not a readable segmentation NRRD ({exc})", "label") from exc
    kinds = [str(k).lower() for k in header.get("kinds", [])]
    layers = data if data.ndim == 4 or (kinds and kinds[0] == "list") else data[None]  # (layers, x, y[, z])
    if layers.ndim == 4:
        if layers.shape[3] != 1:
            raise RadVLSMInputError(f"segmentation of {layers.shape[3]} slices: a 2D image has one", "label")
        layers = layers[..., 0]
    if layers.ndim != 3:
        raise RadVLSMInputError(f"segmentation of shape {data.shape}: a one-slice 2D segmentation expected", "label")
    offset = [int(v) for v in str(header.get("Segmentation_ReferenceImageExtentOffset", "0 0 0")).split()][:2]
    width, height = size_wh
    x0, y0 = offset
    x1, y1 = x0 + layers.shape[1], y0 + layers.shape[2]
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise RadVLSMInputError(
            f"segmentation extent x {x0}..{x1}, y {y0}..{y1} lies outside the {width}x{height} image", "label"
        )
    label = np.zeros((height, width), dtype=np.uint8)
    segments = _segments(header) or [(0, 0, 1)]
    for index, layer, value in segments:
        if layer >= layers.shape[0]:
            raise RadVLSMInputError(f"segment {index} is in layer {layer} of {layers.shape[0]}", "label")
        inside = value == layers[layer].T  # NRRD axes are x first
        label[y0:y1, x0:x1][inside] = index + 1
    logger.info("segmentation %s: %d segment(s), %d labelled pixels", path, len(segments), int((label > 0).sum()))
    return label


def plain_label(path: str | Path, image_file: str | Path, out_dir: str | Path) -> str:
    """``path`` unchanged, or for a ``.seg.nrrd`` a label file of the image's type and geometry in ``out_dir``."""
    if not is_segmentation_nrrd(path):
        return str(path)
    image = load_image_2d(image_file)
    height, width = image.size_hw
    label = segmentation_label(path, (width, height))
    out = Path(out_dir) / f"label{label_extension(str(image_file))}"
    return str(write_label_like(image_file, label, out))


def with_pathology(label_info: dict[str, Any] | None) -> dict[str, Any]:
    """``label_info`` plus ``pathology`` from its segment names when it has none.

    3D Slicer sends only the segments' names (``label_info: [{"name": ..., "idx": ...}]``): an annotator
    who names the segment ``lesion (malignant)`` (or ``benign``, ``normal``) gives the trainer its pathology.
    """
    info = dict(label_info or {})
    if info.get("pathology") in (None, "") and info.get("diagnosis") in (None, ""):
        segments = info.get("label_info") if isinstance(info.get("label_info"), list) else []
        pathology = pathology_of([str(s.get("name", "")) for s in segments if isinstance(s, dict)])
        if pathology:
            info["pathology"] = pathology
    return info


class SlicerLabelsDatastore(AtomicLocalDatastore):
    """The app's local datastore, also taking 3D Slicer's ``.seg.nrrd`` labels and pathology in segment names."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Save a label (:func:`with_pathology`); a ``.seg.nrrd`` is stored as a plain label of the image's type.

        Raises:
            HTTPException: as :meth:`AtomicLocalDatastore.save_label`, and 422 for an unreadable segmentation.
        """
        info = with_pathology(label_info)
        if not is_segmentation_nrrd(label_filename):
            return super().save_label(image_id, label_filename, label_tag, info)
        with client_errors("datastore label upload"), tempfile.TemporaryDirectory() as tmp:
            check_name(image_id, "image id")
            if image_id not in self._datastore.objects:
                raise not_found(f"image {image_id!r} is not in the datastore")
            converted = plain_label(label_filename, self.get_image_uri(image_id), tmp)
            return super().save_label(image_id, converted, label_tag, {**info, "source": SEG_NRRD})
