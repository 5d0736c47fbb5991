"""A 2D label as a DICOM SEG object referencing its single-frame ultrasound image (highdicom).

MONAI Label converts final labels to DICOM SEG with dcmqi's ``itkimage2segimage``, which it downloads
from GitHub at start-up and which assumes a 3D patient coordinate system. Ultrasound images have
none (the US IOD has no plane position or orientation), so the app writes the SEG itself: one binary
segment per label value, one frame, referencing the source image (``ReferencedSeriesSequence``, which
MONAI Label reads to pair labels with images), with the label's pixels in the image's row/column order
and the shared pixel measures OHIF's SEG loader needs.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from monai.transforms import LoadImage
from pydicom.dataset import Dataset
from pydicom.filereader import dcmread
from pydicom.sr.codedict import codes

from radvlsm.dicom.to_images import pixel_spacing_mm
from radvlsm.dicom.uids import stable_uid
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

SERIES_NUMBER = 300
LESION_COLOUR_LAB = hd.color.CIELabColor(50.0, 66.0, 45.0)  # a red, about sRGB (220, 50, 50)


def source_image(series_dir: str | Path) -> Dataset:
    """The single instance of a downloaded image series.

    Raises:
        RadVLSMInputError: the folder holds no or several DICOM files, or a multi-frame image.
    """
    files = sorted(Path(series_dir).glob("*.dcm"))
    if len(files) != 1:
        raise RadVLSMInputError(f"{len(files)} DICOM files: a 2D ultrasound series holds one image", str(series_dir))
    ds = dcmread(str(files[0]))
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise RadVLSMInputError(f"{ds.NumberOfFrames} frames: only single-frame images are labelled", str(files[0]))
    return ds


def label_rows_columns(label_file: str | Path, rows: int, columns: int) -> np.ndarray:
    """A label file (NIfTI/NRRD written in the image's file geometry, x first) as a ``(rows, columns)`` array.

    Raises:
        RadVLSMInputError: the label's size is not the image's.
    """
    array = np.asarray(LoadImage(image_only=True)(str(label_file)))
    array = np.squeeze(array)
    if array.ndim != 2 or array.shape != (columns, rows):
        raise RadVLSMInputError(f"label of shape {array.shape} does not fit a {columns}x{rows} (WxH) image")
    return np.ascontiguousarray(array.T).astype(np.uint16)


def _segment(number: int, name: str) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="Rad-VLSM", version="1", family=codes.DCM.ArtificialIntelligence
        ),
    )
    description.RecommendedDisplayCIELabValue = list(LESION_COLOUR_LAB.value)  # else viewers pick (and warn)
    return description


def pixel_measures(image: Dataset) -> hd.PixelMeasuresSequence:
    """The SEG's pixel measures: the image's calibrated spacing, or a nominal 1 mm when it has none.

    Viewers (OHIF's SEG loader) require the shared pixel measures even for images without geometry;
    the slice thickness is the image's (``SliceThickness``; see :func:`geometry_source`), if any.
    """
    spacing = pixel_spacing_mm(image) or (1.0, 1.0)
    thickness = image.get("SliceThickness")
    return hd.PixelMeasuresSequence(pixel_spacing=list(spacing), slice_thickness=thickness)


def geometry_source(image: Dataset) -> Dataset:
    """``image`` as highdicom should see it: a frame of reference only together with a complete image plane.

    highdicom takes a single-frame image's slice thickness from ``SliceThickness``, which US images lack:
    the copy gets a nominal 1 mm (the SEG's own pixel measures come from :func:`pixel_measures`).
    """
    if "FrameOfReferenceUID" not in image:
        return image
    source = copy.copy(image)
    if not all(k in image for k in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing")):
        del source.FrameOfReferenceUID
        return source
    if "SliceThickness" not in image:
        source.SliceThickness = 1.0
    return source


def label_to_seg(
    image: Dataset,
    label: np.ndarray,
    names: Mapping[int, str] | None = None,
    series_description: str = "Rad-VLSM",
    content_label: str = "SEGMENTATION",
    descriptions: Mapping[int, str] | None = None,
) -> hd.seg.Segmentation:
    """A BINARY SEG of ``label`` (``(rows, columns)``, values = segment numbers) over ``image``.

    Its UIDs derive from the image, the label content and ``content_label``, so saving the same label
    twice gives the same SEG (and a pre-annotation of the same pixels another one).

    Args:
        image: the source US image.
        label: label values; 0 is background.
        names: segment names by value (default ``lesion`` for 1, ``label <n>`` otherwise).
        series_description: the SEG series description (at most 64 characters are kept).
        content_label: the SEG's ``ContentLabel`` (a DICOM CS: upper case, digits, ``_``).
        descriptions: free-text segment descriptions by value (``SegmentDescription``, 64 characters).

    Raises:
        RadVLSMInputError: an empty label (a SEG needs at least one segment).
    """
    values = [int(v) for v in np.unique(label) if v != 0]
    if not values:
        raise RadVLSMInputError("the label is empty: nothing to store as DICOM SEG", str(image.SOPInstanceUID))
    names = dict(names or {1: "lesion"})
    masks = np.stack([label == v for v in values], axis=-1)[None]  # (1 frame, rows, columns, segments)
    source = geometry_source(image)
    content = hashlib.sha256(label.tobytes()).hexdigest()
    salt = () if content_label == "SEGMENTATION" else (content_label,)
    digest = hd.UID(stable_uid("seg", str(image.SOPInstanceUID), content, *salt))
    segments = [_segment(i + 1, names.get(v, f"label {v}")) for i, v in enumerate(values)]
    for segment, v in zip(segments, values, strict=True):
        if descriptions and descriptions.get(v):
            segment.SegmentDescription = str(descriptions[v])[:64]
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(stable_uid("seg-series", str(image.SeriesInstanceUID), str(digest))),
        series_number=SERIES_NUMBER,
        sop_instance_uid=digest,
        instance_number=1,
        manufacturer="MONAI Label",
        manufacturer_model_name="radvlsm",
        software_versions="1",
        device_serial_number="0",
        series_description=series_description[:64],
        content_label=content_label,
        pixel_measures=pixel_measures(source),
    )


def label_names(label_info: Sequence[dict[str, Any]] | None) -> dict[int, str]:
    """Segment names from MONAI Label's ``label_info`` (``[{"name": ..., "idx": ...}]``), default ``lesion``."""
    names = {1: "lesion"}
    for i, info in enumerate(label_info or []):
        if isinstance(info, dict) and info.get("name"):
            names[int(info.get("idx", i + 1))] = str(info["name"])
    return names


def write_seg(series_dir: str | Path, label_file: str | Path, out_file: str | Path, label_info: Any = None) -> Path:
    """Write the SEG of ``label_file`` over the image downloaded in ``series_dir`` to ``out_file``."""
    image = source_image(series_dir)
    label = label_rows_columns(label_file, int(image.Rows), int(image.Columns))
    seg = label_to_seg(image, label, label_names(label_info))
    seg.save_as(str(out_file))
    logger.info("DICOM SEG %s over %s", seg.SOPInstanceUID, image.SOPInstanceUID)
    return Path(out_file)


def seg_label(seg: Dataset) -> tuple[np.ndarray, dict[int, str]]:
    """The ``(rows, columns)`` label of a single-image SEG and its segment labels by number.

    Reads both SEG kinds viewers write: BINARY/FRACTIONAL (one frame per segment, as highdicom and
    MONAI Label write) and LABELMAP (one frame of segment numbers, as OHIF 3.13 stores a corrected
    segmentation).

    Raises:
        RadVLSMInputError: a label-map SEG of several frames (a SEG over several images).
    """
    names = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in seg.get("SegmentSequence", [])}
    pixels = np.asarray(seg.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if str(seg.get("SegmentationType", "")).upper() == "LABELMAP":
        if pixels.shape[0] != 1:
            raise RadVLSMInputError(f"{pixels.shape[0]} label-map frames: a 2D image has one", "seg")
        return pixels[0].astype(np.uint16), names
    label = np.zeros(pixels.shape[1:], dtype=np.uint16)
    frames = seg.get("PerFrameFunctionalGroupsSequence", [])
    for i, frame in enumerate(pixels):
        number = int(frames[i].SegmentIdentificationSequence[0].ReferencedSegmentNumber) if frames else i + 1
        label[frame > 0] = number  # overlapping segments: the later one wins
    return label, names
