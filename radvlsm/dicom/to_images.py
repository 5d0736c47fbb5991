"""DICOM -> PNG: 2D image objects (US and others) to 8/16-bit PNG, and DICOM SEG labels to mask PNGs.

Single-frame images only (a multi-frame cine clip needs a frame number). MONOCHROME1 is inverted to
MONOCHROME2, YBR colour is converted to RGB, so the PNG looks like the viewer's picture. A SEG object
(such as the label MONAI Label stores back in the PACS) becomes a ``0/255`` mask of its referenced
image's size. Output names are the series description when it is a safe file name (what
:mod:`radvlsm.dicom.from_images` writes: the source image ID), else the SOP instance UID.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import dcmread
from pydicom.pixel_data_handlers.util import convert_color_space

from radvlsm.dicom.from_images import NOMINAL_SPACING_NOTE
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def read_dicom(path: str | Path) -> Dataset:
    """``dcmread`` with a clear error for a missing or non-DICOM file.

    Raises:
        RadVLSMInputError: the file is missing or not DICOM.
    """
    try:
        return dcmread(str(path))
    except (InvalidDicomError, OSError) as exc:
        raise RadVLSMInputError(f"not a readable DICOM file ({exc})", str(path)) from exc


def _decoded(ds: Dataset, source: str) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises several types for missing handlers or bad pixel data
        raise RadVLSMInputError(f"pixel data cannot be decoded ({type(exc).__name__}: {exc})", source) from exc


def image_pixels(ds: Dataset, source: str = "") -> np.ndarray:
    """The displayable pixels of a single-frame image: ``(H, W)`` gray or ``(H, W, 3)`` RGB.

    Raises:
        RadVLSMInputError: no pixel data, several frames, or an undecodable or unsupported format.
    """
    source = source or str(ds.get("SOPInstanceUID", "dataset"))
    if "PixelData" not in ds:
        raise RadVLSMInputError("no pixel data (not an image object)", source)
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise RadVLSMInputError(f"{ds.NumberOfFrames} frames: only single-frame images convert to PNG", source)
    pixels = _decoded(ds, source)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("YBR"):
        pixels = convert_color_space(pixels, photometric, "RGB")
    elif photometric == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
    elif photometric == "PALETTE COLOR":
        raise RadVLSMInputError("PALETTE COLOR images are not supported", source)
    if pixels.dtype.kind == "i":
        if pixels.min() < 0:
            raise RadVLSMInputError("signed pixel values below 0 have no PNG equivalent", source)
        pixels = pixels.astype(np.uint16)
    if pixels.ndim == 3 or int(ds.get("BitsStored", 8)) <= 8:
        return pixels.astype(np.uint8)
    return pixels.astype(np.uint16)


def seg_mask(ds: Dataset, source: str = "") -> np.ndarray:
    """A DICOM SEG's segments merged into one ``(H, W)`` uint8 mask (255 where any segment is set).

    Raises:
        RadVLSMInputError: not a SEG, or a SEG of several frames per segment (a 3D volume).
    """
    source = source or str(ds.get("SOPInstanceUID", "dataset"))
    if ds.get("SOPClassUID") != SEG_STORAGE:
        raise RadVLSMInputError("not a DICOM SEG object", source)
    frames = _decoded(ds, source)
    frames = frames.reshape(-1, int(ds.Rows), int(ds.Columns))
    n_segments = len(ds.get("SegmentSequence", [])) or 1
    if frames.shape[0] != n_segments:
        raise RadVLSMInputError(f"{frames.shape[0]} frames for {n_segments} segment(s): not a 2D label", source)
    return (frames.max(axis=0) > 0).astype(np.uint8) * 255


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm from the first cm-calibrated ultrasound region, or ``PixelSpacing``.

    A nominal ``PixelSpacing`` (see :mod:`radvlsm.dicom.from_images`) is no calibration: None.
    """
    for region in ds.get("SequenceOfUltrasoundRegions", []):
        if region.get("PhysicalUnitsXDirection") == 3 and region.get("PhysicalUnitsYDirection") == 3:
            return float(region.PhysicalDeltaY) * 10.0, float(region.PhysicalDeltaX) * 10.0
    if "PixelSpacing" in ds and ds.get("PixelSpacingCalibrationDescription") != NOMINAL_SPACING_NOTE:
        return float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])
    return None


def output_name(ds: Dataset, taken: set[str]) -> str:
    """The PNG's stem: the series description when safe and unused, else the SOP instance UID."""
    description = str(ds.get("SeriesDescription", "")).strip()
    if ds.get("SOPClassUID") == SEG_STORAGE:
        description = ""
    stem = description if SAFE_NAME.match(description) and description not in taken else str(ds.SOPInstanceUID)
    taken.add(stem)
    return stem


def dicom_files(inputs: Sequence[str | Path]) -> list[Path]:
    """DICOM files named by ``inputs`` (files, or folders searched recursively for ``*.dcm``).

    Raises:
        RadVLSMInputError: an input does not exist, or nothing found.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise RadVLSMInputError("no such file or folder", str(item))
        files += sorted(item.rglob("*.dcm")) if item.is_dir() else [item]
    if not files:
        raise RadVLSMInputError(f"no .dcm file found in {', '.join(map(str, inputs))}")
    return files


def convert_dicom(inputs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Write each DICOM image as ``<name>.png`` and each SEG as ``<name>_seg.png`` under ``out_dir``.

    Args:
        inputs: DICOM files or folders.
        out_dir: output folder (created).

    Returns:
        the written PNG files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for path in dicom_files(inputs):
        ds = read_dicom(path)
        is_seg = ds.get("SOPClassUID") == SEG_STORAGE
        pixels = seg_mask(ds, str(path)) if is_seg else image_pixels(ds, str(path))
        target = out / f"{output_name(ds, taken)}{'_seg' if is_seg else ''}.png"
        Image.fromarray(pixels).save(target)
        written.append(target)
    logger.info("wrote %d PNG files under %s", len(written), out)
    return written
