"""OHIF in headless Chromium against Orthanc (DICOMweb) and the MONAI Label app, end to end.

Phantom studies are converted to DICOM US (``radvlsm dicom from-images``, with its default image plane)
and uploaded to a private Orthanc; MONAI Label serves the app on that DICOMweb store (``Modality=US``)
with the shipped weights. In the OHIF viewer MONAI Label serves, the MONAI Label panel runs
``radvlsm_auto`` on the open study (a real click). That panel paints results only into a labelmap
*volume*, which OHIF never builds for a one-image series (``segmentationService.getLabelmapVolume``;
not "reconstructable", so the mode's MPR layout stays empty), so nothing is drawn there: annotation
teams use OHIF 3.13 with pre-annotation instead (``test_ohif_relabeling_round.py``, where the result is
drawn and edited). Here the returned label is saved the way the old panel's "save label" does
(``PUT /datastore/label`` with the labelmap voxels as ``label.bin``). The app stores it in Orthanc as
DICOM SEG, and OHIF's viewer then loads that SEG and overlays it on the image: checked in OHIF's
segmentation state (the labelmap equals the saved mask) and on screen. Screenshots go to ``tests/e2e/artifacts/``.

Skips with the missing piece named when Orthanc, its DICOMweb plugin, Chromium or Playwright is not
installed (``scripts/install_e2e.sh`` installs them).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from browser import chromium_page, coloured_pixels, viewport_box
from browser import missing_pieces as browser_missing
from label_server import ROOT, LabelServer, running_server
from orthanc_server import OrthancServer, running_orthanc
from orthanc_server import missing_pieces as orthanc_missing
from PIL import Image
from pydicom import dcmread

from radvlsm.dicom.from_images import convert_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
N_IMAGES = 4
UI_TIMEOUT_MS = 120_000
# OHIF's segmentations (cornerstone3D tools state, which OHIF exposes on window) with their labelmap voxels
SEGMENTATIONS_JS = """() => window.cornerstoneTools.segmentation.state.getSegmentations().map((s) => {
  const labelmap = s.representationData.Labelmap || {};
  const images = (labelmap.imageIds || []).map((id) => window.cornerstone.cache.getImage(id)).filter(Boolean);
  return {id: s.segmentationId, label: s.label, volumeId: labelmap.volumeId || null,
          voxels: images.map((im) => Array.from(im.getPixelData()))};
})"""
WEIGHTS = ROOT / "bundles" / "radvlsm_breast_us" / "models" / "model.pt"


@dataclass
class Stack:
    """Orthanc, the MONAI Label server on it, and the uploaded images by series UID."""

    orthanc: OrthancServer
    label: LabelServer
    images: dict[str, dict]  # series UID -> {"study", "rows", "columns", "name"}


@pytest.fixture(scope="module")
def stack(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = orthanc_missing() + browser_missing()
    if missing:
        pytest.skip(f"end-to-end test needs {', '.join(missing)}: run scripts/install_e2e.sh")
    work = tmp_path_factory.mktemp("e2e")
    pngs = sorted((phantom_dir / "Images").glob("*.png"))[:N_IMAGES]
    files = convert_images(pngs, work / "dicom", patient_id="phantom-e2e")
    images = {}
    for f in files:
        ds = dcmread(str(f), stop_before_pixels=True)
        images[str(ds.SeriesInstanceUID)] = {"study": str(ds.StudyInstanceUID), "rows": int(ds.Rows),
                                             "columns": int(ds.Columns), "name": str(ds.SeriesDescription)}  # fmt: skip
    (work / "orthanc").mkdir()
    (work / "server" / "models").mkdir(parents=True)
    if WEIGHTS.is_file():
        shutil.copy(WEIGHTS, work / "server" / "models" / "model.pt")
    with running_orthanc(work / "orthanc") as orthanc:
        orthanc.upload(files)
        conf = {"device": "cpu", "skip_trainers": "true"}
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "cache")}
        with running_server(orthanc.dicomweb, work / "server", conf, env) as label:
            yield Stack(orthanc, label, images)


def nrrd_voxels(data: bytes, rows: int, columns: int) -> np.ndarray:
    """OHIF's reading of the infer answer: raw uint8 NRRD voxels, x fastest."""
    header, raw = data.split(b"\n\n", 1)
    assert b"encoding: raw" in header and b"type: unsigned char" in header, header[:400]
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, columns)


def test_the_datastore_lists_the_uploaded_ultrasound_series(stack: Stack) -> None:
    assert sorted(stack.label.request("GET", "/datastore/?output=stats").json()["total"] for _ in [0]) == [N_IMAGES]
    found = {s["0020000E"]["Value"][0] for s in stack.orthanc.find_series(Modality="US")}
    assert found == set(stack.images)


@pytest.fixture(scope="module")
def ohif_run(stack: Stack, phantom_dir: Path) -> dict:
    """Run ``radvlsm_auto`` from OHIF's MONAI Label panel; save its label as OHIF's save does."""
    ARTIFACTS.mkdir(exist_ok=True)
    study = next(iter(stack.images.values()))["study"]
    console: list[str] = []
    try:
        with chromium_page(console) as page:
            page.context.add_cookies([{"name": "MONAILABEL_SERVER_URL", "value": stack.label.url + "/",
                                       "url": stack.label.url}])  # fmt: skip
            # the work list shows the PACS study through MONAI Label's DICOMweb proxy
            page.goto(f"{stack.label.url}/ohif/")
            page.get_by_text("phantom-e2e").first.wait_for(timeout=UI_TIMEOUT_MS)
            # MONAI Label mode with one stack viewport (its default MPR layout needs a volume)
            page.goto(f"{stack.label.url}/ohif/monai-label?StudyInstanceUIDs={study}&hangingProtocolId=default")
            page.get_by_text("Confirm and Hide").click(timeout=UI_TIMEOUT_MS)
            page.locator("canvas").first.wait_for(timeout=UI_TIMEOUT_MS)
            page.locator("#monailabelServerURL").locator("xpath=ancestor::tr[1]").locator("button").first.click()
            page.get_by_text("Auto-Segmentation").click(timeout=UI_TIMEOUT_MS)
            with page.expect_response(lambda r: "/infer/radvlsm_auto" in r.url, timeout=UI_TIMEOUT_MS) as answer:
                page.get_by_role("button", name="Run").first.click()
            response = answer.value
            assert response.status == 200, f"{response.status}: {response.text()[:500]}"
            page.get_by_text("Running Segmentation - Successful").wait_for(timeout=UI_TIMEOUT_MS)
            time.sleep(2)
            page.screenshot(path=str(ARTIFACTS / "ohif_auto_run.png"))
            series = response.url.split("image=")[1].split("&")[0]
            body = response.body()
    finally:
        (ARTIFACTS / "ohif_console_run.log").write_text("\n".join(console))
    image = stack.images[series]
    mask = nrrd_voxels(body, image["rows"], image["columns"])
    with Image.open(phantom_dir / "Images" / f"{image['name']}.png") as im:
        gray = np.asarray(im.convert("RGB")).copy()
    gray[mask > 0] = (0.5 * gray[mask > 0] + [127, 0, 0]).astype(np.uint8)
    Image.fromarray(gray).save(ARTIFACTS / "auto_mask_over_image.png")
    # what OHIF's "save label" sends: the labelmap voxels as label.bin, tag final
    params = {"label_info": [{"name": "lesion", "idx": 1}]}
    files = {"label": ("label.bin", mask.tobytes(), "application/octet-stream")}
    query = {"image": series, "tag": "final"}
    saved = stack.label.request(
        "PUT", "/datastore/label", params=query, data={"params": json.dumps(params)}, files=files
    )
    return {"series": series, "study": study, "mask": mask, "image": image, "saved": saved}


def test_ohif_panel_runs_the_task_and_the_mask_lies_on_the_lesion(ohif_run: dict, phantom_dir: Path) -> None:
    mask, image = ohif_run["mask"], ohif_run["image"]
    with Image.open(phantom_dir / "Masks" / f"{image['name'].replace('bus_', 'mask_', 1)}.png") as im:
        truth = np.asarray(im) > 0
    dice = 2 * np.logical_and(mask > 0, truth).sum() / max(1, (mask > 0).sum() + truth.sum())
    assert dice > 0.5, f"mask returned to OHIF misses the phantom lesion (Dice {dice:.3f}): wrong model or orientation"


def test_saved_label_is_stored_in_orthanc_as_seg(stack: Stack, ohif_run: dict) -> None:
    saved = ohif_run["saved"]
    assert saved.status_code == 200, f"{saved.status_code}: {saved.text[:2000]}\n{stack.label.log_tail()}"
    segs = stack.orthanc.find_series(Modality="SEG")
    assert len(segs) == 1, f"expected one SEG series in Orthanc, found {len(segs)}"
    study, series = segs[0]["0020000D"]["Value"][0], segs[0]["0020000E"]["Value"][0]
    assert study == ohif_run["study"]
    meta = stack.orthanc.series_metadata(study, series)[0]
    assert meta["00081115"]["Value"][0]["0020000E"]["Value"][0] == ohif_run["series"]  # ReferencedSeriesSequence
    stats = stack.label.request("GET", "/datastore/?output=stats").json()  # "completed" is cached for minutes
    assert stats["label_tags"].get("final") == 1, stats


def labelmap_voxels(segmentation: dict, rows: int, columns: int) -> np.ndarray:
    """The one-image labelmap of an OHIF segmentation (from :data:`SEGMENTATIONS_JS`) as ``(rows, columns)``."""
    assert len(segmentation["voxels"]) == 1, f"{len(segmentation['voxels'])} labelmap images, expected one"
    return np.asarray(segmentation["voxels"][0], dtype=np.uint8).reshape(rows, columns)


def test_ohif_shows_the_stored_seg_over_the_image(stack: Stack, ohif_run: dict) -> None:
    assert ohif_run["saved"].status_code == 200
    image, mask = ohif_run["image"], ohif_run["mask"]
    console: list[str] = []
    try:
        with chromium_page(console) as page:
            page.goto(f"{stack.label.url}/ohif/viewer?StudyInstanceUIDs={ohif_run['study']}")
            page.get_by_text("Confirm and Hide").click(timeout=UI_TIMEOUT_MS)
            page.locator("canvas").first.wait_for(timeout=UI_TIMEOUT_MS)
            # show the labelled image alone first (its thumbnail), then the SEG that references it
            page.get_by_text(image["name"], exact=True).first.dblclick(timeout=UI_TIMEOUT_MS)
            time.sleep(3)
            page.screenshot(path=str(ARTIFACTS / "ohif_before_seg.png"))
            before = coloured_pixels(ARTIFACTS / "ohif_before_seg.png", viewport_box(page))
            assert page.evaluate(SEGMENTATIONS_JS) == []
            page.get_by_text("SEG", exact=True).first.dblclick(timeout=UI_TIMEOUT_MS)
            page.get_by_role("button", name="Yes").first.click(timeout=UI_TIMEOUT_MS)  # "open this Segmentation?"
            page.wait_for_function("() => window.cornerstoneTools.segmentation.state.getSegmentations().length > 0",
                                   timeout=UI_TIMEOUT_MS)  # fmt: skip
            time.sleep(3)
            page.screenshot(path=str(ARTIFACTS / "ohif_seg_overlay.png"))
            after = coloured_pixels(ARTIFACTS / "ohif_seg_overlay.png", viewport_box(page))
            segmentations = page.evaluate(SEGMENTATIONS_JS)
    finally:
        (ARTIFACTS / "ohif_console_seg.log").write_text("\n".join(console))
    assert [s["label"] for s in segmentations] == ["Rad-VLSM"], segmentations
    shown = labelmap_voxels(segmentations[0], image["rows"], image["columns"])
    assert np.array_equal(shown > 0, mask > 0), (
        f"OHIF's SEG labelmap differs from the saved mask ({(shown > 0).sum()} vs {(mask > 0).sum()} pixels, "
        f"{np.logical_xor(shown > 0, mask > 0).sum()} differ): orientation or geometry lost"
    )
    assert after > before + 1000, f"no SEG overlay on screen ({before} -> {after} coloured pixels); see {ARTIFACTS}"
