"""Pre-annotation, OHIF-site and 3D Slicer label helpers without a server (the e2e and Slicer tests run them live)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nrrd
import numpy as np
import pytest
from lib.dicom_seg import label_to_seg, seg_label
from lib.ohif_site import make_server
from lib.preannotation import describe, is_preannotation, pathology_of, preannotation_seg, write_label_like
from lib.slicer_labels import is_segment_name, plain_label, segmentation_label, with_pathology
from PIL import Image
from pydicom import dcmread

from radvlsm.dicom.from_images import convert_images
from radvlsm.errors import RadVLSMInputError

RESULT = {
    "diagnosis": "malignant",
    "malignancy_probability": 0.8312,
    "candidates": [{"box": [1, 2, 3, 4], "reliability": 0.912}, {"box": [1, 2, 3, 4], "reliability": 0.4}],
}


@pytest.fixture()
def image(phantom_dir: Path, tmp_path: Path):
    (dicom,) = convert_images([sorted((phantom_dir / "Images").glob("*.png"))[0]], tmp_path / "dcm")
    return dcmread(str(dicom))


def off_centre_mask(rows: int, columns: int) -> np.ndarray:
    mask = np.zeros((rows, columns), np.uint16)
    mask[10:40, 20:90] = 1  # wide and off-centre: a transpose or flip would not match
    return mask


def test_describe_gives_the_diagnosis_and_each_candidates_reliability() -> None:
    assert describe(RESULT) == ("Rad-VLSM auto: malignant p=0.83", "lesion (malignant)", "reliability 0.91 0.40")
    assert describe({}) == ("Rad-VLSM auto: unknown p=?", "lesion (unknown)", "reliability n/a")


def test_preannotation_seg_is_marked_and_reads_back(image) -> None:
    mask = off_centre_mask(int(image.Rows), int(image.Columns))
    seg = preannotation_seg(image, mask, RESULT)
    assert is_preannotation(seg) and seg.SeriesDescription == "Rad-VLSM auto: malignant p=0.83"
    assert seg.SegmentSequence[0].SegmentLabel == "lesion (malignant)"
    assert seg.SegmentSequence[0].SegmentDescription == "reliability 0.91 0.40"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == image.SeriesInstanceUID
    label, names = seg_label(seg)
    assert np.array_equal(label > 0, mask > 0) and names == {1: "lesion (malignant)"}
    final = label_to_seg(image, mask)
    assert not is_preannotation(final) and final.SeriesInstanceUID != seg.SeriesInstanceUID


def test_seg_label_reads_several_segments_by_number(image) -> None:
    label = off_centre_mask(int(image.Rows), int(image.Columns))
    label[50:60, 5:15] = 2
    seg = label_to_seg(image, label, {1: "lesion (benign)", 2: "cyst"})
    read, names = seg_label(seg)
    assert np.array_equal(read, label) and names == {1: "lesion (benign)", 2: "cyst"}


@pytest.mark.parametrize(
    ("names", "expected"),
    [(["lesion (benign)"], "benign"), (["Malignant lesion"], "malignant"), (["lesion"], None), (["benignity"], None)],
)
def test_pathology_from_segment_names(names: list[str], expected: str | None) -> None:
    assert pathology_of(names) == expected
    info = with_pathology({"label_info": [{"name": n, "idx": 1} for n in names]})
    assert info.get("pathology") == expected
    assert with_pathology({"label_info": [{"name": "lesion (benign)"}], "pathology": "malignant"})["pathology"] == (
        "malignant"
    )


def test_segment_names_are_not_files() -> None:
    assert is_segment_name("lesion") and is_segment_name("lesion (benign)")
    assert not is_segment_name("/tmp/label.png") and not is_segment_name("../label.png")


def write_seg_nrrd(path: Path, layers: np.ndarray, segments: list[tuple[int, int]], offset: tuple[int, int]) -> None:
    """A Slicer-style ``.seg.nrrd``: ``layers`` ``(L, x, y, 1)``; ``segments`` ``(layer, label value)``."""
    header = {"dimension": 4, "kinds": ["list", "domain", "domain", "domain"],
              "Segmentation_ReferenceImageExtentOffset": f"{offset[0]} {offset[1]} 0"}  # fmt: skip
    for n, (layer, value) in enumerate(segments):
        header.update({f"Segment{n}_ID": f"Segment_{n + 1}", f"Segment{n}_Name": f"s{n}",
                       f"Segment{n}_Layer": str(layer), f"Segment{n}_LabelValue": str(value)})  # fmt: skip
    nrrd.write(str(path), layers.astype(np.uint8), header)


def test_segmentation_nrrd_with_overlapping_layers_and_a_cropped_extent(tmp_path: Path) -> None:
    layers = np.zeros((2, 6, 4, 1), np.uint8)  # x 6, y 4 inside a 20x10 image at offset (3, 2)
    layers[0, 0:3, 0:2, 0] = 1  # segment 0: x 3..5, y 2..3
    layers[1, 2:6, 1:4, 0] = 1  # segment 1 (other layer, overlapping): x 5..8, y 3..5
    write_seg_nrrd(tmp_path / "l.seg.nrrd", layers, [(0, 1), (1, 1)], (3, 2))
    label = segmentation_label(tmp_path / "l.seg.nrrd", (20, 10))
    expected = np.zeros((10, 20), np.uint8)
    expected[2:4, 3:6] = 1
    expected[3:6, 5:9] = 2
    assert np.array_equal(label, expected)
    with pytest.raises(RadVLSMInputError, match="outside"):
        segmentation_label(tmp_path / "l.seg.nrrd", (6, 4))


def test_plain_label_writes_a_png_label_over_a_png_image(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "image.png")
    layers = np.zeros((1, 4, 2, 1), np.uint8)
    layers[0, 1:3, 0:2, 0] = 1
    write_seg_nrrd(tmp_path / "l.seg.nrrd", layers, [(0, 1)], (10, 5))
    out = plain_label(tmp_path / "l.seg.nrrd", tmp_path / "image.png", tmp_path)
    assert out.endswith(".png")
    with Image.open(out) as im:
        label = np.asarray(im)
    assert label.shape == (10, 20) and set(zip(*np.nonzero(label), strict=True)) == {(5, 11), (5, 12), (6, 11), (6, 12)}
    assert plain_label(tmp_path / "image.png", tmp_path / "image.png", tmp_path) == str(tmp_path / "image.png")


def test_write_label_like_refuses_a_label_of_another_size(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "image.png")
    with pytest.raises(ValueError, match="does not fit"):
        write_label_like(tmp_path / "image.png", np.zeros((20, 10), np.uint8), tmp_path / "l.png")


class FakePACS(BaseHTTPRequestHandler):
    """Answers every request with what it received (method, path, body)."""

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        data = json.dumps({"method": self.command, "path": self.path, "body": body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[str]:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html>ohif</html>")
    (dist / "app.bundle.js").write_text("bundle")
    (tmp_path / "secret.txt").write_text("secret")
    config = tmp_path / "app-config.js"
    config.write_text("window.config = {};")
    pacs = ThreadingHTTPServer(("127.0.0.1", 0), FakePACS)
    server = make_server(f"http://127.0.0.1:{pacs.server_address[1]}/dicom-web", port=0, dist=dist, app_config=config)
    for s in (pacs, server):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    for s in (pacs, server):
        s.shutdown()
        s.server_close()


def get(url: str, data: bytes | None = None) -> tuple[str, str]:
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as answer:
        return answer.headers.get("Content-Type", ""), answer.read().decode()


def test_ohif_site_serves_the_app_our_config_and_proxies_the_pacs(site: str) -> None:
    assert get(f"{site}/segmentation?StudyInstanceUIDs=1.2.3") == ("text/html", "<html>ohif</html>")
    assert get(f"{site}/app.bundle.js") == ("text/javascript", "bundle")
    assert get(f"{site}/app-config.js")[1] == "window.config = {};"
    assert get(f"{site}/%2e%2e/secret.txt")[1] == "<html>ohif</html>"  # nothing outside the dist
    kind, body = get(f"{site}/dicom-web/studies?PatientID=x")
    assert kind == "application/dicom+json" and json.loads(body)["path"] == "/dicom-web/studies?PatientID=x"
    stored = json.loads(get(f"{site}/dicom-web/studies", data=b"stow-body")[1])
    assert stored == {"method": "POST", "path": "/dicom-web/studies", "body": "stow-body"}
