"""PNG/JPEG -> DICOM US: valid objects, BUS-BRA study grouping, stable UIDs, pixels and spacing kept."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from radvlsm.cli import main
from radvlsm.dicom.from_images import NOMINAL_SPACING_NOTE, ConversionOptions, convert_images
from radvlsm.dicom.to_images import pixel_spacing_mm
from radvlsm.dicom.validation import ULTRASOUND_IMAGE_STORAGE, us_problems
from radvlsm.errors import RadVLSMInputError


@pytest.fixture(scope="module")
def converted(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("dicom")
    return convert_images([phantom_dir], out, ConversionOptions(pixel_spacing_mm=(0.1, 0.12)))


def test_every_phantom_image_becomes_a_valid_single_frame_us_object(converted: list[Path], phantom_dir: Path) -> None:
    assert len(converted) == len(list((phantom_dir / "Images").glob("*.png")))
    for path in converted:
        ds = dcmread(str(path))
        assert us_problems(ds) == []
        assert ds.SOPClassUID == ULTRASOUND_IMAGE_STORAGE and ds.Modality == "US"
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.LossyImageCompression == "00"


def test_pixels_and_spacing_survive(converted: list[Path], phantom_dir: Path) -> None:
    for path in converted:
        ds = dcmread(str(path))
        with Image.open(phantom_dir / "Images" / f"{ds.SeriesDescription}.png") as im:
            original = np.asarray(im.convert("L"))
        assert np.array_equal(ds.pixel_array, original)
        assert pixel_spacing_mm(ds) == pytest.approx((0.1, 0.12))


def test_one_study_per_busbra_case_and_one_series_per_image(converted: list[Path], phantom_dir: Path) -> None:
    rows = [line.split(",") for line in (phantom_dir / "bus_data.csv").read_text().splitlines()[1:]]
    case_of = {r[0]: r[1] for r in rows}
    datasets = [dcmread(str(p), stop_before_pixels=True) for p in converted]
    studies = {ds.SeriesDescription: ds.StudyInstanceUID for ds in datasets}
    for a in studies:
        for b in studies:
            assert (studies[a] == studies[b]) == (case_of[a] == case_of[b])
    assert len({ds.SeriesInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert all(ds.ImageLaterality in ("L", "R") for ds in datasets)
    assert all(ds.PatientID == f"case-{int(case_of[ds.SeriesDescription]):04d}" for ds in datasets)


def test_converting_again_gives_the_same_uids(converted: list[Path], phantom_dir: Path, tmp_path: Path) -> None:
    again = convert_images([phantom_dir], tmp_path, ConversionOptions(pixel_spacing_mm=(0.1, 0.12)))
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(converted[0].parents[1]) for p in converted]
    other = convert_images([phantom_dir], tmp_path / "ns", ConversionOptions(namespace="other-site"))
    assert {p.name for p in other}.isdisjoint({p.name for p in converted})


def test_colour_and_jpeg_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray_rgb = np.repeat(rng.integers(0, 255, (20, 30, 1), dtype=np.uint8), 3, axis=2)
    colour = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(gray_rgb).save(tmp_path / "gray.png")
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray(gray_rgb).save(tmp_path / "scan.jpg")
    files = convert_images([tmp_path], tmp_path / "out", patient_id="P1")
    by_name = {dcmread(str(p)).SeriesDescription: dcmread(str(p)) for p in files}
    assert by_name["gray"].PhotometricInterpretation == "MONOCHROME2"
    assert by_name["colour"].PhotometricInterpretation == "RGB" and by_name["colour"].PlanarConfiguration == 0
    assert np.array_equal(by_name["colour"].pixel_array, colour)
    assert by_name["scan"].LossyImageCompression == "01"
    assert len({ds.StudyInstanceUID for ds in by_name.values()}) == 1
    assert all(us_problems(ds) == [] for ds in by_name.values())


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(RadVLSMInputError, match=r"broken\.png: not a readable PNG/JPEG"):
        convert_images([tmp_path / "broken.png"], tmp_path / "out")
    with pytest.raises(RadVLSMInputError, match="no such file"):
        convert_images([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RadVLSMInputError, match="no PNG/JPEG image"):
        convert_images([tmp_path / "empty"], tmp_path / "out")


def test_cli_from_images_and_bad_spacing(phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["dicom", "from-images", str(phantom_dir), "--out", str(tmp_path), "--pixel-spacing", "0.1"]) == 0
    assert '"n_files": 12' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["dicom", "from-images", str(phantom_dir), "--out", str(tmp_path), "--pixel-spacing", "-1"])
    assert exc.value.code == 2
    assert "not a positive spacing" in capsys.readouterr().err
    assert main(["dicom", "from-images", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) not installed")
def test_dciodvfy_finds_no_error(converted: list[Path]) -> None:
    result = subprocess.run(["dciodvfy", str(converted[0])], capture_output=True, text=True)
    report = result.stdout + result.stderr
    assert "USImage" in report
    assert not [line for line in report.splitlines() if line.startswith("Error")], report


def test_image_plane_calibrated_nominal_or_off(converted: list[Path], tmp_path: Path) -> None:
    ds = dcmread(str(converted[0]))
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.ImagePositionPatient] == [0, 0, 0]
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.1, 0.12])
    assert "PixelSpacingCalibrationDescription" not in ds
    frames = {dcmread(str(p), stop_before_pixels=True).FrameOfReferenceUID for p in converted}
    assert len(frames) == len(converted)  # one frame of reference per image: no shared patient space claimed
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "x.png")
    nominal = dcmread(str(convert_images([tmp_path / "x.png"], tmp_path / "a")[0]))
    assert [float(v) for v in nominal.PixelSpacing] == [1.0, 1.0]
    assert nominal.PixelSpacingCalibrationDescription == NOMINAL_SPACING_NOTE
    assert pixel_spacing_mm(nominal) is None  # nominal spacing is no calibration
    bare = dcmread(
        str(convert_images([tmp_path / "x.png"], tmp_path / "b", ConversionOptions(plane_geometry=False))[0])
    )
    assert not {"FrameOfReferenceUID", "ImageOrientationPatient", "PixelSpacing"} & set(bare.dir())
    assert bare.SOPInstanceUID == nominal.SOPInstanceUID and us_problems(bare) == []
