"""What a single-frame DICOM Ultrasound Image object written by :mod:`radvlsm.dicom.from_images` must carry.

The lists follow the Ultrasound Image IOD (PS3.3 A.6): type 1 attributes must have a value, type 2
attributes must be present (possibly empty). ``dciodvfy`` (Debian ``dicom3tools``) checks the whole IOD
when it is installed; these checks need nothing beyond pydicom.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

ULTRASOUND_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")

TYPE1 = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelData",
)
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "SeriesNumber",
    "Manufacturer",
    "InstanceNumber",
    "PatientOrientation",
    "ImageType",
)


def us_problems(ds: Dataset) -> list[str]:
    """Problems that make ``ds`` an invalid single-frame US image (empty list when it is valid).

    Args:
        ds: a dataset read with ``pydicom.dcmread``.
    """
    problems = [f"{name} missing or empty" for name in TYPE1 if name not in ds or ds[name].value in (None, "")]
    problems += [f"{name} missing" for name in TYPE2 if name not in ds]
    if problems:
        return problems
    if ds.SOPClassUID != ULTRASOUND_IMAGE_STORAGE:
        problems.append(f"SOPClassUID {ds.SOPClassUID} is not Ultrasound Image Storage")
    if ds.Modality != "US":
        problems.append(f"Modality {ds.Modality!r} is not 'US'")
    if getattr(ds, "file_meta", None) is None or ds.file_meta.get("MediaStorageSOPInstanceUID") != ds.SOPInstanceUID:
        problems.append("file meta MediaStorageSOPInstanceUID differs from SOPInstanceUID")
    expected = {"MONOCHROME2": 1, "RGB": 3}.get(ds.PhotometricInterpretation)
    if expected is None:
        problems.append(f"PhotometricInterpretation {ds.PhotometricInterpretation!r} is not MONOCHROME2 or RGB")
    elif ds.SamplesPerPixel != expected:
        problems.append(f"SamplesPerPixel {ds.SamplesPerPixel} does not fit {ds.PhotometricInterpretation}")
    if ds.SamplesPerPixel == 3 and ds.get("PlanarConfiguration") is None:
        problems.append("PlanarConfiguration missing for a colour image")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        problems.append(f"{ds.NumberOfFrames} frames, expected a single frame")
    return problems
