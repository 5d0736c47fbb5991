"""PNG/JPEG ultrasound images -> single-frame DICOM Ultrasound Image objects (for a PACS such as Orthanc).

Each image becomes its own series (one instance), so a DICOMweb client sees one 2D image per series, as
MONAI Label's DICOMweb datastore expects. Studies group the images of one patient: in a BUS-BRA folder
the patient is the CSV's ``Case`` (and ``Side`` gives the image laterality); in a plain folder every image
is its own patient unless one ``patient_id`` is given. Gray images (including RGB files whose three
channels are equal) are stored MONOCHROME2, colour ones RGB; JPEG sources are flagged as lossy. A known
pixel spacing is written as an ultrasound calibration region (``SequenceOfUltrasoundRegions``, the US
IOD's way to carry it). By default each image also gets a trivial image plane (``plane_geometry``):
its own ``FrameOfReferenceUID``, ``ImageOrientationPatient`` 1\\0\\0\\0\\1\\0 (rows along x,
columns along y), ``ImagePositionPatient`` 0\\0\\0 and ``PixelSpacing`` (the calibration when known,
else a *nominal* 1 mm, flagged in ``PixelSpacingCalibrationDescription`` and ignored by
:func:`radvlsm.dicom.to_images.pixel_spacing_mm`). These Image Plane attributes are not part of the US
IOD (a standard extended SOP class) and describe no real patient position: they exist because OHIF /
cornerstone3D build a one-slice volume from them, which is how OHIF draws a segmentation over the image
(MONAI Label results and stored DICOM SEG). Turn them off for a PACS that should get the bare US IOD.
UIDs come from :mod:`radvlsm.dicom.uids`, so converting again gives the same UIDs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import dcmread
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from radvlsm.data.busbra import CSV_NAME, read_csv_rows
from radvlsm.data.image_io import DICOM_SOURCE_SUFFIXES, LOSSY_SUFFIXES, list_images, matching_suffix
from radvlsm.dicom.uids import DEFAULT_NAMESPACE, stable_uid
from radvlsm.dicom.validation import ULTRASOUND_IMAGE_STORAGE, us_problems
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

SIDES = {"left": "L", "right": "R", "l": "L", "r": "R"}
NOMINAL_SPACING_MM = (1.0, 1.0)
NOMINAL_SPACING_NOTE = "NOMINAL 1 MM, UNCALIBRATED"


@dataclass
class SourceImage:
    """One image to convert and where it belongs.

    Args:
        path: the PNG/JPEG file.
        image_id: its name in the dataset (the series description).
        patient_id: the patient; one study per patient.
        laterality: ``"L"``, ``"R"`` or ``""``.
        model_name: the scanner (BUS-BRA ``Device``), or ``""``.
    """

    path: Path
    image_id: str
    patient_id: str
    laterality: str = ""
    model_name: str = ""


@dataclass
class ConversionOptions:
    """Settings shared by every image of one conversion.

    Args:
        pixel_spacing_mm: ``(row, column)`` spacing in mm, or None when unknown.
        namespace: mixed into every UID (keeps two datasets with the same IDs apart).
        body_part: ``BodyPartExamined``.
        institution: ``InstitutionName`` (empty: not written).
        plane_geometry: write the trivial image plane (frame of reference, orientation, position, pixel
            spacing) that viewers such as OHIF need to overlay segmentations; see the module docstring.
    """

    pixel_spacing_mm: tuple[float, float] | None = None
    namespace: str = DEFAULT_NAMESPACE
    body_part: str = "BREAST"
    institution: str = ""
    plane_geometry: bool = True


def _pixels(path: Path) -> tuple[np.ndarray, str]:
    """``(pixels, photometric)``: ``(H, W)`` uint8/uint16 MONOCHROME2 or ``(H, W, 3)`` uint8 RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img)
                if array.min() < 0 or array.max() > 65535:
                    raise RadVLSMInputError(f"pixel values {array.min()}..{array.max()} do not fit 16 bits", str(path))
                return array.astype(np.uint16), "MONOCHROME2"
            if mode in ("L", "1"):
                return np.asarray(img.convert("L"), dtype=np.uint8), "MONOCHROME2"
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise RadVLSMInputError(f"not a readable PNG/JPEG image ({exc})", str(path)) from exc
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]), "MONOCHROME2"
    return rgb, "RGB"


def _ultrasound_region(rows: int, columns: int, spacing_mm: tuple[float, float]) -> Dataset:
    """One calibration region covering the image: ``PhysicalDeltaX/Y`` in cm per pixel (units code 3)."""
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = columns - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = float(spacing_mm[1]) / 10.0
    region.PhysicalDeltaY = float(spacing_mm[0]) / 10.0
    return region


def image_to_dataset(source: SourceImage, options: ConversionOptions, series_number: int = 1) -> FileDataset:
    """The DICOM US object for one image.

    Args:
        source: the image and its patient.
        options: spacing, namespace and the descriptive attributes.
        series_number: ``SeriesNumber`` (the image's position within its study).

    Raises:
        RadVLSMInputError: the file is not a readable PNG/JPEG image.
    """
    pixels, photometric = _pixels(source.path)
    digest = hashlib.sha256(pixels.tobytes()).hexdigest()
    ns = options.namespace
    sop_uid = stable_uid("instance", source.patient_id, source.image_id, digest, namespace=ns)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ULTRASOUND_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(source.path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False

    ds.SOPClassUID, ds.SOPInstanceUID = ULTRASOUND_IMAGE_STORAGE, sop_uid
    ds.PatientName = source.patient_id.replace("^", " ") + "^"  # family name only (no retired one-part form)
    ds.PatientID = source.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID = stable_uid("study", source.patient_id, namespace=ns)
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.AccessionNumber = "", "", "", ""
    ds.StudyID = source.patient_id[:16]
    ds.StudyDescription = "Breast ultrasound" if options.body_part == "BREAST" else "Ultrasound"
    ds.Modality = "US"
    ds.SeriesInstanceUID = stable_uid("series", source.patient_id, source.image_id, namespace=ns)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = source.image_id[:64]
    ds.BodyPartExamined = options.body_part
    ds.Manufacturer = ""
    if source.model_name:
        ds.ManufacturerModelName = source.model_name[:64]
    if options.institution:
        ds.InstitutionName = options.institution
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    if source.laterality:
        ds.ImageLaterality = source.laterality
    if matching_suffix(source.path, LOSSY_SUFFIXES):
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.LossyImageCompression = "00"

    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if options.pixel_spacing_mm:
        ds.SequenceOfUltrasoundRegions = [_ultrasound_region(ds.Rows, ds.Columns, options.pixel_spacing_mm)]
    if options.plane_geometry:
        _add_image_plane(
            ds, options.pixel_spacing_mm, stable_uid("frame", source.patient_id, source.image_id, namespace=ns)
        )
    ds.PixelData = pixels.tobytes()
    return ds


def _add_image_plane(ds: Dataset, spacing_mm: tuple[float, float] | None, frame_uid: str) -> None:
    """The image's own frame of reference with the pixel grid on its x/y plane (see the module docstring)."""
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelSpacing = [float(v) for v in (spacing_mm or NOMINAL_SPACING_MM)]
    if spacing_mm is None:
        ds.PixelSpacingCalibrationDescription = NOMINAL_SPACING_NOTE


def busbra_sources(root: Path) -> list[SourceImage]:
    """The images of a BUS-BRA-layout folder (``bus_data.csv`` + ``Images/``), patient = ``Case``.

    Raises:
        RadVLSMInputError: the CSV lacks ``ID``/``Case`` or names an image that is not there.
    """
    sources = []
    for row in read_csv_rows(root / CSV_NAME, required=("ID", "Case")):
        image_id, case = row["ID"].strip(), row["Case"].strip()
        path = root / "Images" / f"{image_id}.png"
        if not path.is_file():
            raise RadVLSMInputError(f"image of CSV row {image_id!r} not found", str(path))
        side = SIDES.get((row.get("Side") or "").strip().lower(), "")
        patient = f"case-{int(case):04d}" if case.isdigit() else f"case-{case}"
        sources.append(SourceImage(path, image_id, patient, side, (row.get("Device") or "").strip()))
    return sources


def folder_sources(paths: Sequence[Path], patient_id: str | None = None) -> list[SourceImage]:
    """Plain image files: each its own patient (its file stem), or all of one ``patient_id``."""
    return [SourceImage(p, p.stem, patient_id or p.stem) for p in paths]


def collect_sources(inputs: Sequence[str | Path], patient_id: str | None = None) -> list[SourceImage]:
    """The images named by ``inputs``: a BUS-BRA folder, a folder of PNG/JPEG files, or image files.

    Raises:
        RadVLSMInputError: an input that does not exist, or no image found.
    """
    sources: list[SourceImage] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise RadVLSMInputError("no such file or folder", str(item))
        if item.is_dir() and (item / CSV_NAME).is_file() and (item / "Images").is_dir():
            found = busbra_sources(item)
            if patient_id:
                found = [SourceImage(s.path, s.image_id, patient_id, s.laterality, s.model_name) for s in found]
            sources += found
        elif item.is_dir():
            sources += folder_sources(list_images(item, DICOM_SOURCE_SUFFIXES), patient_id)
        elif matching_suffix(item, DICOM_SOURCE_SUFFIXES):
            sources += folder_sources([item], patient_id)
        else:
            raise RadVLSMInputError(f"not a PNG/JPEG image (suffix {item.suffix!r})", str(item))
    if not sources:
        raise RadVLSMInputError(f"no PNG/JPEG image found in {', '.join(map(str, inputs))}")
    return sources


def write_dataset(ds: FileDataset, out_dir: Path) -> Path:
    """Save ``ds`` as ``out_dir/<PatientID>/<SOPInstanceUID>.dcm``, read it back and check it.

    Raises:
        RadVLSMInputError: the written file fails :func:`radvlsm.dicom.validation.us_problems`.
    """
    path = out_dir / ds.PatientID / f"{ds.SOPInstanceUID}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), write_like_original=False)
    problems = us_problems(dcmread(str(path)))
    if problems:
        raise RadVLSMInputError(f"written DICOM is invalid: {'; '.join(problems)}", str(path))
    return path


def convert_images(
    inputs: Sequence[str | Path], out_dir: str | Path, options: ConversionOptions | None = None,
    patient_id: str | None = None,
) -> list[Path]:  # fmt: skip
    """Convert images to DICOM US files under ``out_dir`` (one folder per patient).

    Args:
        inputs: BUS-BRA folders, image folders or image files.
        out_dir: where the ``.dcm`` files go.
        options: spacing, namespace and descriptive attributes (defaults: unknown spacing, ``radvlsm``).
        patient_id: put every image under this one patient (one study).

    Returns:
        the written files, in input order.
    """
    options = options or ConversionOptions()
    out = Path(out_dir)
    series_numbers: dict[str, int] = {}
    written = []
    for source in collect_sources(inputs, patient_id):
        series_numbers[source.patient_id] = series_numbers.get(source.patient_id, 0) + 1
        ds = image_to_dataset(source, options, series_numbers[source.patient_id])
        written.append(write_dataset(ds, out))
        logger.debug("%s -> %s", source.path, written[-1])
    logger.info("wrote %d DICOM US files under %s", len(written), out)
    return written
