"""2D ultrasound through MONAI Label's DICOMweb path: DICOM -> NIfTI -> model geometry -> NRRD / DICOM SEG.

The image is converted as MONAI Label converts a downloaded series; the mask must come back in the
image's row/column order in the NRRD that OHIF reads and in the SEG stored in the PACS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lib.dicom_seg import label_names, label_to_seg, write_seg
from lib.images import load_image_2d
from monailabel.datastore.utils.convert import binary_to_image, dicom_to_nifti
from monailabel.transform.writer import write_itk
from PIL import Image
from pydicom import dcmread

from radvlsm.dicom.from_images import convert_images
from radvlsm.dicom.to_images import seg_mask
from radvlsm.errors import RadVLSMInputError


@pytest.fixture()
def series(phantom_dir: Path, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """One phantom image as a downloaded US series folder, and its original pixels."""
    png = sorted((phantom_dir / "Images").glob("*.png"))[0]
    convert_images([png], tmp_path / "dcm")
    series_dir = tmp_path / "series"
    series_dir.mkdir()
    for f in (tmp_path / "dcm").rglob("*.dcm"):
        f.rename(series_dir / f.name)
    with Image.open(png) as im:
        return series_dir, np.asarray(im.convert("L"))


def asymmetric_mask(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[10:40, 20:90] = 1  # wide, off-centre: a transpose or flip would not match
    return mask


def nrrd_voxels(path: Path, shape_hw: tuple[int, int]) -> np.ndarray:
    """The raw voxels of an uncompressed NRRD, in file order (x fastest), as OHIF reads them."""
    data = path.read_bytes()
    header, raw = data.split(b"\n\n", 1)
    assert b"encoding: raw" in header
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape_hw)


def test_converted_series_reads_with_the_image_orientation(series: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    series_dir, original = series
    image = load_image_2d(dicom_to_nifti(str(series_dir)))
    assert np.array_equal(image.gray.astype(np.uint8), original)
    mask = asymmetric_mask(image.size_hw)
    out = tmp_path / "label.nrrd"
    write_itk(image.to_file_geometry(mask), str(out), image.affine, np.uint8, False)
    assert np.array_equal(nrrd_voxels(out, image.size_hw), mask)


def test_seg_of_a_nifti_label_and_of_ohif_bin_voxels(series: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    series_dir, _ = series
    nifti = dicom_to_nifti(str(series_dir))
    image = load_image_2d(nifti)
    mask = asymmetric_mask(image.size_hw)
    label = tmp_path / "label.nii.gz"
    write_itk(image.to_file_geometry(mask), str(label), image.affine, np.uint8, True)
    source = dcmread(str(next(series_dir.glob("*.dcm"))))
    seg = dcmread(str(write_seg(series_dir, label, tmp_path / "seg.dcm")))
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "lesion"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert np.array_equal(seg_mask(seg), mask * 255)
    # OHIF's save sends the labelmap voxels (x fastest) as label.bin
    raw = tmp_path / "label.bin"
    raw.write_bytes(mask.tobytes())
    from_bin = binary_to_image(nifti, str(raw))
    seg_bin = dcmread(str(write_seg(series_dir, from_bin, tmp_path / "seg2.dcm")))
    assert np.array_equal(seg_mask(seg_bin), mask * 255)
    assert seg_bin.SOPInstanceUID == seg.SOPInstanceUID  # same label, same UIDs


def test_empty_or_mismatched_labels_are_clear_errors(series: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    series_dir, original = series
    source = dcmread(str(next(series_dir.glob("*.dcm"))))
    with pytest.raises(RadVLSMInputError, match="label is empty"):
        label_to_seg(source, np.zeros(original.shape, np.uint16))
    wrong = tmp_path / "wrong.nii.gz"
    write_itk(np.ones((7, 5, 1), np.uint8), str(wrong), np.eye(4), np.uint8, True)
    with pytest.raises(RadVLSMInputError, match="does not fit"):
        write_seg(series_dir, wrong, tmp_path / "seg.dcm")


def test_segment_names_come_from_the_label_info() -> None:
    assert label_names(None) == {1: "lesion"}
    assert label_names([{"name": "mass", "idx": 1}, {"name": "cyst", "idx": 2}]) == {1: "mass", 2: "cyst"}


def test_seg_carries_the_image_plane_when_the_image_has_one(series: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    series_dir, original = series
    source = dcmread(str(next(series_dir.glob("*.dcm"))))
    mask = asymmetric_mask(original.shape)
    seg = label_to_seg(source, mask)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [1.0, 1.0]
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert [float(v) for v in position] == [0, 0, 0]
    assert len(seg.SegmentSequence[0].RecommendedDisplayCIELabValue) == 3
    bare = dcmread(str(next(series_dir.glob("*.dcm"))))
    for keyword in ("FrameOfReferenceUID", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        delattr(bare, keyword)
    plain = label_to_seg(bare, mask)
    assert "FrameOfReferenceUID" not in plain
    assert "PlaneOrientationSequence" not in plain.SharedFunctionalGroupsSequence[0]
    assert np.array_equal(seg_mask(plain), seg_mask(seg))
