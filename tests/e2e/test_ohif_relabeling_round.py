"""One whole relabeling round in OHIF 3.13 (headless Chromium), Orthanc and MONAI Label, end to end.

Phantom studies (one image each, converted with ``radvlsm dicom from-images``) go to a private
Orthanc; MONAI Label serves the app on that DICOMweb store with the shipped weights. Reliability
scoring runs, and the most reliable image gets its truth label as 3D Slicer submits one (a ``.seg.nrrd``,
the pathology in the segment's name; stored in Orthanc as SEG). Then the round:

1. :func:`lib.preannotation.preannotate` asks the ``radvlsm_reliability`` strategy for the next image,
   runs ``radvlsm_auto`` and stores the result in Orthanc as a pre-annotation SEG;
2. OHIF 3.13 (npm ``@ohif/app`` dist, served by :mod:`lib.ohif_site` with our ``app-config.js``) opens
   the study in its segmentation mode and loads that SEG over the US image (checked in the screenshot's
   pixels and in OHIF's segmentation state), a brush stroke adds to it, the annotator renames the
   segment to the other pathology (correcting the diagnosis), and OHIF stores the corrected SEG in
   Orthanc as a new series;
3. MONAI Label takes the corrected SEG as the image's final label (with the pathology from the segment
   name), trains on the two labels, serves the new weights, and the strategy chooses the next image.

Images are cropped to even sizes: OHIF 3.13 fails to store a SEG over an image with an odd number of
pixels (``RangeError: start offset of Uint16Array should be a multiple of 2`` in its SEG writer).
Screenshots go to ``tests/e2e/artifacts/``. Skips, naming the missing piece, without Orthanc, its
DICOMweb plugin, Chromium, Playwright or the OHIF dist (``scripts/install_e2e.sh`` installs them).
"""

from __future__ import annotations

import csv
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import chromium_page, coloured_pixels, viewport_box
from browser import missing_pieces as browser_missing
from label_server import ROOT, LabelServer, running_server
from orthanc_server import OrthancServer, running_orthanc
from orthanc_server import missing_pieces as orthanc_missing
from PIL import Image
from pydicom import dcmread
from slicer_files import slicer_seg_nrrd

from radvlsm.dicom.from_images import convert_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
N_IMAGES = 4
UI_TIMEOUT_MS = 90_000
TRAIN_TIMEOUT_S = 400
WEIGHTS = ROOT / "bundles" / "radvlsm_breast_us" / "models" / "model.pt"
CORRECTED = "Rad-VLSM corrected"
OTHER_PATHOLOGY = {"benign": "malignant", "malignant": "benign"}
TRAIN_REQUEST = {"max_epochs": 1, "epochs_align": 1, "epochs_fusion": 2, "val_split": 0}
SEGMENTATIONS_JS = """() => window.cornerstoneTools.segmentation.state.getSegmentations().map((s) => {
  const labelmap = s.representationData.Labelmap || {};
  const images = (labelmap.imageIds || []).map((id) => window.cornerstone.cache.getImage(id)).filter(Boolean);
  return {label: s.label, segments: Object.values(s.segments).filter(Boolean).map((x) => x.label),
          voxels: images.map((im) => Array.from(im.getPixelData()))};
})"""


def ohif_dist() -> Path:
    """Where ``scripts/install_e2e.sh`` puts the OHIF dist."""
    from lib.ohif_site import DEFAULT_DIST

    return DEFAULT_DIST


@dataclass
class Round:
    """The running pieces and what each step of the round gave."""

    orthanc: OrthancServer
    label: LabelServer
    site: str
    images: dict[str, dict]  # series UID -> study, rows, columns, name
    truth: dict[str, np.ndarray]  # series UID -> truth mask (rows, columns)
    work: Path
    steps: dict[str, Any] = field(default_factory=dict)


def even_crop(path: Path) -> None:
    with Image.open(path) as im:
        cropped = im.crop((0, 0, im.width // 2 * 2, im.height // 2 * 2))
    cropped.save(path)


@pytest.fixture(scope="module")
def stack(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Round]:
    missing = orthanc_missing() + browser_missing()
    if not (ohif_dist() / "index.html").is_file():
        missing.append(f"the OHIF 3.13 dist in {ohif_dist()} (npm @ohif/app)")
    if missing:
        pytest.skip(f"end-to-end test needs {', '.join(missing)}: run scripts/install_e2e.sh")
    from lib.ohif_site import make_server

    work = tmp_path_factory.mktemp("round")
    source = work / "phantom"
    shutil.copytree(phantom_dir, source)
    with open(source / "bus_data.csv", newline="") as f:
        pathology = {row["ID"]: row["Pathology"] for row in csv.DictReader(f)}
    images, truth = {}, {}
    for i, png in enumerate(sorted((source / "Images").glob("*.png"))[:N_IMAGES]):
        mask = source / "Masks" / png.name.replace("bus_", "mask_", 1)
        even_crop(png), even_crop(mask)
        (dicom,) = convert_images([png], work / "dicom" / str(i), patient_id=f"round-{i}")
        ds = dcmread(str(dicom), stop_before_pixels=True)
        series = str(ds.SeriesInstanceUID)
        images[series] = {"study": str(ds.StudyInstanceUID), "rows": int(ds.Rows), "columns": int(ds.Columns),
                          "name": png.stem, "file": dicom, "pathology": pathology[png.stem]}  # fmt: skip
        with Image.open(mask) as im:
            truth[series] = np.asarray(im) > 0
    (work / "orthanc").mkdir()
    (work / "server" / "models").mkdir(parents=True)
    if WEIGHTS.is_file():
        shutil.copy(WEIGHTS, work / "server" / "models" / "model.pt")
    with running_orthanc(work / "orthanc") as orthanc:
        orthanc.upload([i["file"] for i in images.values()])
        conf = {"device": "cpu"}
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "cache"), "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "1"}
        with running_server(orthanc.dicomweb, work / "server", conf, env) as label:
            site = make_server(orthanc.dicomweb, port=0)
            thread = threading.Thread(target=site.serve_forever, daemon=True)
            thread.start()
            try:
                yield Round(orthanc, label, f"http://127.0.0.1:{site.server_address[1]}", images, truth, work)
            finally:
                site.shutdown()
                site.server_close()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def seg_of(orthanc: OrthancServer, description: str) -> Any:
    """The one SEG instance in Orthanc with ``description`` as series description (WADO-RS, pydicom)."""
    from lib.preannotation import dicomweb_client

    found = [s for s in orthanc.find_series(Modality="SEG") if s.get("0008103E", {}).get("Value") == [description]]
    assert len(found) == 1, f"{len(found)} SEG series named {description!r} in Orthanc"
    study, series = found[0]["0020000D"]["Value"][0], found[0]["0020000E"]["Value"][0]
    (instance,) = dicomweb_client(orthanc.dicomweb).retrieve_series(study, series)
    return instance


def auto_description(steps: dict) -> str:
    """The pre-annotation SEG's series description."""
    from lib.preannotation import describe

    return describe(steps["preannotation"]["result"])[0]


@pytest.fixture(scope="module")
def prepared(stack: Round) -> Round:
    """Reliability scoring, then one truth label saved through MONAI Label (the second training label)."""
    label = stack.label
    scored = label.request("POST", "/scoring/radvlsm_reliability", params={"run_sync": "true"}, json={})
    assert scored.status_code == 200, scored.text
    infos = label.request("GET", "/datastore/", params={"output": "all"}).json()["objects"]
    reliability = {k: v["image"]["info"].get("radvlsm_reliability") for k, v in infos.items()}
    assert set(reliability) == set(stack.images) and all(r is not None for r in reliability.values()), reliability
    seeded = max(reliability, key=lambda k: (reliability[k], k))  # the most reliable image: labeled beforehand
    # as 3D Slicer submits it against the same server: a .seg.nrrd, the pathology in the segment's name
    name = f"lesion ({stack.images[seeded]['pathology']})"
    seg_nrrd = slicer_seg_nrrd(stack.truth[seeded].astype(np.uint8), name, stack.work / "seed.seg.nrrd")
    params = {"label_info": [{"name": name, "idx": 1}], "model": "radvlsm_auto"}
    files = {"label": ("seed.seg.nrrd", seg_nrrd.read_bytes(), "application/octet-stream")}
    saved = label.request("PUT", "/datastore/label", params={"image": seeded, "tag": "final"},
                          data={"params": json.dumps(params)}, files=files)  # fmt: skip
    assert saved.status_code == 200, saved.text[:2000] + label.log_tail()
    stack.steps.update(reliability=reliability, seeded=seeded)
    return stack


@pytest.fixture(scope="module")
def preannotated(prepared: Round) -> Round:
    from lib.preannotation import preannotate

    started = time.monotonic()
    done = preannotate(prepared.label.url, prepared.orthanc.dicomweb)
    prepared.steps.update(preannotation=done, preannotate_s=time.monotonic() - started)
    return prepared


def test_the_strategy_chooses_the_least_reliable_unlabeled_image(preannotated: Round) -> None:
    steps = preannotated.steps
    unlabeled = {k: r for k, r in steps["reliability"].items() if k != steps["seeded"]}
    assert steps["preannotation"]["image"] == min(unlabeled, key=lambda k: (unlabeled[k], k))


def test_the_preannotation_seg_carries_the_diagnosis_and_lies_on_the_lesion(preannotated: Round) -> None:
    from lib.dicom_seg import seg_label
    from lib.preannotation import is_preannotation

    done = preannotated.steps["preannotation"]
    result = done["result"]
    seg = seg_of(preannotated.orthanc, f"Rad-VLSM auto: {result['diagnosis']} p={result['malignancy_probability']:.2f}")
    assert auto_description(preannotated.steps) == seg.SeriesDescription
    assert is_preannotation(seg) and str(seg.SeriesInstanceUID) == done["seg_series"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == done["image"]
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == f"lesion ({result['diagnosis']})"
    assert segment.SegmentDescription.startswith("reliability ") and len(segment.SegmentDescription.split()) > 1
    mask, _ = seg_label(seg)
    assert dice(mask > 0, preannotated.truth[done["image"]]) > 0.5, "pre-annotation misses the lesion"
    stats = preannotated.label.request("GET", "/datastore/?output=stats").json()
    assert stats["label_tags"].get("final") == 1, f"a pre-annotation must not count as a label: {stats}"


@pytest.fixture(scope="module")
def edited(preannotated: Round) -> Round:
    """OHIF: open the study, load the pre-annotation SEG, brush, store the corrected SEG."""
    ARTIFACTS.mkdir(exist_ok=True)
    done = preannotated.steps["preannotation"]
    console: list[str] = []
    shots = {k: ARTIFACTS / f"round_{k}.png" for k in ("opened", "preannotation", "brushed")}
    started = time.monotonic()
    try:
        with chromium_page(console) as page:
            page.goto(f"{preannotated.site}/segmentation?StudyInstanceUIDs={done['study']}")
            page.locator('[data-cy="viewport-pane"] canvas').first.wait_for(timeout=UI_TIMEOUT_MS)
            page.get_by_text("Rad-VLSM auto:").first.wait_for(timeout=UI_TIMEOUT_MS)
            close_cine = page.locator('[data-cy="cine-player-close"]')
            if close_cine.count():
                close_cine.first.click()
            time.sleep(2)
            box = viewport_box(page, '[data-cy="viewport-pane"] canvas')
            page.screenshot(path=str(shots["opened"]))
            page.get_by_text("Rad-VLSM auto:").first.dblclick()
            page.get_by_role("button", name="Yes").first.click(timeout=UI_TIMEOUT_MS)  # "open this Segmentation?"
            page.wait_for_function("() => window.cornerstoneTools.segmentation.state.getSegmentations().length > 0",
                                   timeout=UI_TIMEOUT_MS)  # fmt: skip
            time.sleep(3)
            page.screenshot(path=str(shots["preannotation"]))
            loaded = page.evaluate(SEGMENTATIONS_JS)
            # a brush stroke across the upper left of the image (outside the phantom's central lesion)
            page.locator('[data-cy="Brush-btn"]').first.click()
            x0, y0 = box[0] + (box[2] - box[0]) * 0.15, box[1] + (box[3] - box[1]) * 0.35
            page.mouse.move(x0, y0)
            page.mouse.down()
            for i in range(1, 16):
                page.mouse.move(x0 + 8 * i, y0 + 2 * i)
            page.mouse.up()
            time.sleep(2)
            page.screenshot(path=str(shots["brushed"]))
            brushed = page.evaluate(SEGMENTATIONS_JS)
            # the annotator disagrees with the diagnosis: segment menu > Rename
            renamed = f"lesion ({OTHER_PATHOLOGY[done['result']['diagnosis']]})"
            row = page.locator('[data-cy="data-row"]').first
            row.hover()
            row.locator("button").last.click()
            page.get_by_role("menuitem", name="Rename").click()
            page.locator('[data-cy="dialog-input"]').first.fill(renamed)
            page.get_by_role("button", name="Save").last.click()
            page.wait_for_function(f"() => JSON.stringify(({SEGMENTATIONS_JS})()).includes({json.dumps(renamed)})",
                                   timeout=UI_TIMEOUT_MS)  # fmt: skip
            # Export > DICOM SEG > Create new series > Save: STOW-RS through the site's PACS proxy
            page.locator('[data-cy="segmentation-collapsed-more-btn-Labelmap"]').first.click()
            page.get_by_text("Export", exact=True).first.hover()
            page.get_by_text("DICOM SEG", exact=True).first.click()
            page.get_by_role("combobox").last.click()
            page.get_by_role("option", name="Create new series").click()
            page.locator('[data-cy="dialog-input"]').fill(CORRECTED)
            with page.expect_response(lambda r: r.request.method == "POST" and "/dicom-web/" in r.url,
                                      timeout=UI_TIMEOUT_MS) as stored:  # fmt: skip
                page.get_by_role("button", name="Save").last.click()
            status = stored.value.status
    finally:
        (ARTIFACTS / "round_console.log").write_text("\n".join(console))
    preannotated.steps.update(shots=shots, box=box, loaded=loaded, brushed=brushed, stow_status=status,
                              renamed=renamed, ohif_s=time.monotonic() - started)  # fmt: skip
    return preannotated


def labelmap(segmentation: dict, image: dict) -> np.ndarray:
    assert len(segmentation["voxels"]) == 1, f"{len(segmentation['voxels'])} labelmap images, expected one"
    return np.asarray(segmentation["voxels"][0], dtype=np.uint8).reshape(image["rows"], image["columns"])


def test_ohif_paints_the_automatic_result_over_the_ultrasound_image(edited: Round) -> None:
    from lib.dicom_seg import seg_label

    steps = edited.steps
    image = edited.images[steps["preannotation"]["image"]]
    before = coloured_pixels(steps["shots"]["opened"], steps["box"])
    after = coloured_pixels(steps["shots"]["preannotation"], steps["box"])
    auto, _ = seg_label(seg_of(edited.orthanc, auto_description(steps)))
    # the lesion's share of the viewport, in screen pixels, is what the overlay must colour (at least half)
    w, h = steps["box"][2] - steps["box"][0], steps["box"][3] - steps["box"][1]
    scale = min(w / image["columns"], h / image["rows"]) ** 2
    assert after - before > 0.5 * scale * (auto > 0).sum(), (
        f"the automatic result is not painted: {before} -> {after} coloured pixels for {(auto > 0).sum()} "
        f"mask pixels at {scale:.2f} screen pixels each; see {steps['shots']['preannotation']}"
    )
    (loaded,) = steps["loaded"]
    assert loaded["segments"] == [f"lesion ({steps['preannotation']['result']['diagnosis']})"]
    assert np.array_equal(labelmap(loaded, image) > 0, auto > 0), "OHIF's labelmap differs from the stored SEG"


def test_the_brush_stroke_edits_the_labelmap(edited: Round) -> None:
    steps = edited.steps
    image = edited.images[steps["preannotation"]["image"]]
    loaded, brushed = labelmap(steps["loaded"][0], image) > 0, labelmap(steps["brushed"][0], image) > 0
    assert brushed.sum() > loaded.sum() + 100 and np.all(brushed[loaded]), "the brush added nothing"


def test_ohif_stores_the_corrected_seg_in_orthanc(edited: Round) -> None:
    from lib.dicom_seg import seg_label
    from lib.preannotation import is_preannotation

    steps = edited.steps
    assert steps["stow_status"] == 200
    seg = seg_of(edited.orthanc, CORRECTED)
    assert not is_preannotation(seg)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == steps["preannotation"]["image"]
    mask, names = seg_label(seg)
    image = edited.images[steps["preannotation"]["image"]]
    assert np.array_equal(mask > 0, labelmap(steps["brushed"][0], image) > 0), "stored SEG != edited labelmap"
    assert list(names.values()) == [steps["renamed"]], "the renamed segment did not reach the PACS"


@pytest.fixture(scope="module")
def trained(edited: Round) -> Round:
    label = edited.label
    started = time.monotonic()
    task = label.request("POST", "/train/radvlsm", json=TRAIN_REQUEST).json()
    deadline, status = time.monotonic() + TRAIN_TIMEOUT_S, {}
    while time.monotonic() < deadline:
        status = label.request("GET", "/train/").json()
        if status.get("id") == task.get("id") and status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(2)
    edited.steps.update(train_status=status, train_s=time.monotonic() - started)
    return edited


def test_monai_label_trains_on_the_corrected_label_and_serves_the_new_weights(trained: Round) -> None:
    steps, label = trained.steps, trained.label
    assert steps["train_status"].get("status") == "DONE", json.dumps(steps["train_status"])[-3000:] + label.log_tail()
    datalists = sorted(label.work_dir.glob("train/*/datalist.json"))
    items = json.loads(datalists[-1].read_text())["training"]
    edited_image = steps["preannotation"]["image"]
    assert {i["id"] for i in items} >= {edited_image, steps["seeded"]}
    seed = next(i for i in items if i["id"] == steps["seeded"])
    assert seed["pathology"] == trained.images[steps["seeded"]]["pathology"], seed
    corrected = next(i for i in items if i["id"] == edited_image)
    assert corrected["pathology"] == OTHER_PATHOLOGY[steps["preannotation"]["result"]["diagnosis"]], corrected
    stat = (label.model_dir / "model.pt").stat()
    served = label.request("POST", "/infer/radvlsm_auto", params={"image": edited_image, "output": "json"})
    assert served.status_code == 200, served.text[:1000]
    assert served.json()["model"]["stamp"] == f"{stat.st_mtime_ns}-{stat.st_size}"


def test_the_strategy_chooses_the_next_image(trained: Round) -> None:
    steps = trained.steps
    chosen = trained.label.request("POST", "/activelearning/radvlsm_reliability", json={}).json()
    assert chosen["id"] in set(trained.images) - {steps["seeded"], steps["preannotation"]["image"]}
    stats = trained.label.request("GET", "/datastore/?output=stats").json()
    assert stats["label_tags"].get("final") == 2, stats
    (ARTIFACTS / "round_times.json").write_text(
        json.dumps({k: round(steps[k], 1) for k in ("preannotate_s", "ohif_s", "train_s")}, indent=1)
    )
