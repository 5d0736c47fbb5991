"""Everything an annotation team may send, thrown at one real server (tiny network).

Every bad request gets a 4xx naming the problem, the server keeps serving after each, and nothing is
written outside the studies folder (the folders around it are listed before and after).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from hostile_inputs import write_hostile_studies
from label_server import TINY_CONF, LabelServer, parse_infer
from PIL import Image

GOOD = "bus_0001-l"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``a/b/studies``: traversal targets like ``../../x`` land inside it, where we can look."""
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def studies(root: Path, studies_from: Callable[[Path, int], Path]) -> Path:
    return studies_from(root / "a" / "b" / "studies", 2)


@pytest.fixture(scope="module")
def expected(studies: Path) -> dict[str, tuple[int, str]]:
    return write_hostile_studies(studies, studies / f"{GOOD}.png")


@pytest.fixture(scope="module")
def server(
    studies: Path, expected: dict, tmp_path_factory: pytest.TempPathFactory, label_server: Callable
) -> Iterator[LabelServer]:
    with label_server(studies, tmp_path_factory.mktemp("server"), TINY_CONF) as running:
        yield running


@pytest.fixture(scope="module")
def outside_files(root: Path, studies: Path, server: LabelServer) -> set[str]:
    """Every file under ``root`` but outside the studies folder, listed once the server is up."""
    return _outside(root, studies)


def _outside(root: Path, studies: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if studies not in p.parents and p != studies}


def size_hw(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.height, im.width


def assert_refused(server: LabelServer, response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, f"{response.status_code}: {response.text[:1000]}"
    detail = response.json()["detail"]
    assert words in detail, detail
    assert server.alive(), server.log_tail()


@pytest.mark.parametrize(
    "image",
    [
        "truncated",
        "zero_bytes",
        "text_named_png",
        "pdf_named_jpg",
        "bomb",
        "volume",
        "series",
        "nan",
        "gray16",
        "rgba",
        "huge",
        "tiny16",
        "constant",
    ],
)
def test_hostile_images(server: LabelServer, studies: Path, expected: dict, image: str) -> None:
    status, words = expected[image]
    response = server.infer("radvlsm_auto", image)
    if status != 200:
        assert_refused(server, response, status, words)
        return
    result, label = parse_infer(response)
    path = next(studies.glob(f"{image}.*"))
    assert label is not None and label.shape == size_hw(path) and set(np.unique(label)) <= {0, 1}
    assert result["image_size"] == list(size_hw(path)) and result["diagnosis"] in ("benign", "malignant")
    assert server.alive()


def _outside_point(studies: Path) -> list[list[int]]:
    h, w = size_hw(studies / f"{GOOD}.png")
    return [[w, h // 2]]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"foreground": [[-1, 5]]}, "outside the"),
        ({"foreground": [[10, 10000]]}, "outside the"),
        ({"foreground": [[5, 5]], "background": [[-3, -3]]}, "background: point"),
        ({"roi": [5000, 5000, 6000, 6000]}, "outside the"),
        ({"roi": [-50, -50, -10, -10]}, "outside the"),
        ({"roi": [60, 60, 20, 20]}, "no area"),
        ({"roi": [10, 10, 10, 50]}, "no area"),
        ({"roi": [10, 10, 40]}, "[x1, y1, x2, y2]"),
        ({"foreground": "abc"}, "is not JSON"),
        ({"foreground": {"x": 1, "y": 2}}, "must be a list"),
        ({"foreground": [["a", "b"]]}, "expected numbers"),
        ({"foreground": [[True, False]]}, "expected numbers"),
        ({"foreground": [5, 6]}, "expected numbers"),
        ({"foreground": [[1, 2, 3, 4]]}, "[x, y] or [x, y, z]"),
        ({"roi": 7}, "must be a list"),
        ({"roi": ["1", "2", "3", "4"]}, "expected numbers"),
        ({"foreground": [[None, 3]]}, "expected numbers"),
        ({"result_extension": "/../../evil.png", "foreground": [[5, 5]]}, "result_extension"),
        ({"image": 5}, "image"),
    ],
)
def test_bad_prompts_and_wrong_json_types(server: LabelServer, params: dict, words: str) -> None:
    assert_refused(server, server.infer("radvlsm_interactive", GOOD, params), 422, words)


@pytest.mark.parametrize("text", ['{"roi": [NaN, 1, 5, 5]}', '{"roi": [1, 1, Infinity, 5]}'])
def test_non_finite_numbers_in_json(server: LabelServer, text: str) -> None:
    response = server.request("POST", "/infer/radvlsm_interactive", params={"image": GOOD}, data={"params": text})
    assert_refused(server, response, 422, "non-finite")


@pytest.mark.parametrize(
    ("text", "words"),
    [("this is not json", "not valid JSON"), ("[1, 2]", "bad request"), ("5", "bad request"), ('"x"', "bad request")],
)
def test_params_that_are_not_a_json_object(server: LabelServer, text: str, words: str) -> None:
    response = server.request("POST", "/infer/radvlsm_auto", params={"image": GOOD}, data={"params": text})
    assert_refused(server, response, 422, words)


@pytest.mark.parametrize("model", ["no_such_model", "radvlsm", "RADVLSM_AUTO", "radvlsm_auto "])
def test_unknown_model_names(server: LabelServer, model: str) -> None:
    assert_refused(server, server.infer(model, GOOD), 404, "unknown model")


def test_region_masks_empty_full_and_wrong(server: LabelServer, studies: Path, tmp_path: Path) -> None:
    h, w = size_hw(studies / f"{GOOD}.png")
    empty, full, small, junk = (tmp_path / n for n in ("empty.png", "full.png", "small.png", "junk.png"))
    Image.fromarray(np.zeros((h, w), np.uint8)).save(empty)
    Image.fromarray(np.ones((h, w), np.uint8)).save(full)
    Image.fromarray(np.ones((h // 2, w), np.uint8)).save(small)
    junk.write_bytes(b"\x89PNG not really")
    assert_refused(server, server.infer("radvlsm_region", GOOD, label=empty), 422, "region mask is empty")
    assert_refused(server, server.infer("radvlsm_region", GOOD, label=small), 422, "label is")
    assert_refused(server, server.infer("radvlsm_region", GOOD, label=junk), 422, "not a readable image")
    result, _ = parse_infer(server.infer("radvlsm_region", GOOD, label=full))
    assert result["region"]["mask_area_px"] == h * w and 0 <= result["malignancy_probability"] <= 1
    automatic, label = parse_infer(server.infer("radvlsm_interactive", GOOD, {"roi": [0, 0, w, h]}))
    assert label is not None and label.shape == (h, w) and automatic["prompt_mode"] == "box"


def test_traversal_in_infer_image_ids(server: LabelServer, studies: Path, phantom_dir: Path) -> None:
    elsewhere = sorted((phantom_dir / "Images").glob("*.png"))[-1]  # a real image outside the datastore
    for image in ("../../etc/passwd", "/etc/passwd", str(elsewhere), "../studies/bus_0001-l"):
        response = server.infer("radvlsm_auto", image)
        assert response.status_code == 422, (image, response.text)
        assert "outside the datastore" in response.json()["detail"] or "not a plain name" in response.json()["detail"]
    encoded = requests.post(
        f"{server.url}/infer/radvlsm_auto?image=%2e%2e%2f%2e%2e%2fetc%2fpasswd", data={"params": "{}"}, timeout=60
    )
    assert_refused(server, encoded, 422, "image")
    hidden = server.infer("radvlsm_auto", GOOD, {"image": str(elsewhere)})  # params override the query
    assert_refused(server, hidden, 422, "outside the datastore")
    region = server.infer("radvlsm_region", GOOD, {"label": "/etc/hostname"})
    assert_refused(server, region, 422, "outside the datastore")
    inside, _ = parse_infer(server.infer("radvlsm_auto", str(studies / f"{GOOD}.png")))
    assert inside["image_size"] == list(size_hw(studies / f"{GOOD}.png"))


def test_traversal_in_label_and_image_uploads_writes_nothing_outside(
    server: LabelServer, studies: Path, root: Path, outside_files: set[str], tmp_path: Path
) -> None:
    label = tmp_path / "label.png"
    Image.fromarray(np.ones(size_hw(studies / f"{GOOD}.png"), np.uint8)).save(label)
    attempts = [
        ({"image": "../../evil"}, "final"),
        ({"image": "..%2f..%2fevil"}, "final"),
        ({"image": "/tmp/evil"}, "final"),
        ({"image": GOOD}, "../../../evil"),
        ({"image": GOOD}, "/tmp"),
        ({"image": GOOD}, "..%2f..%2f"),
    ]
    for query, tag in attempts:
        with open(label, "rb") as f:
            response = server.request(
                "PUT",
                "/datastore/label",
                params={**query, "tag": tag},
                data={"params": "{}"},
                files={"label": ("../../evil.png", f, "image/png")},
            )
        assert response.status_code == 422, (query, tag, response.text)
    with open(label, "rb") as f:
        response = server.request(
            "PUT", "/datastore/label", params={"image": GOOD}, data={"params": "not json"}, files={"label": f}
        )
    assert_refused(server, response, 422, "not valid JSON")
    for image_id in ("../../evil", "../a/evil", "/tmp/evil", "%2e%2e%2fevil"):
        with open(studies / f"{GOOD}.png", "rb") as f:
            response = server.request(
                "PUT", "/datastore/", params={"image": image_id}, files={"file": ("x.png", f, "image/png")}
            )
        assert response.status_code == 422, (image_id, response.text)
    with open(studies / f"{GOOD}.png", "rb") as f:  # a traversal in the upload's file name only loses its folders
        response = server.request("PUT", "/datastore/", files={"file": ("../../uploaded.png", f, "image/png")})
    assert response.status_code == 200 and response.json()["image"] == "uploaded", response.text
    saves = server.infer("radvlsm_auto", GOOD, {"save_label": True, "label_tag": "../../../evil"})
    assert_refused(server, saves, 422, "label tag")
    for path, query in [
        ("/datastore/image", {"image": "../../etc/passwd"}),
        ("/datastore/label", {"label": "../../etc/passwd", "tag": "final"}),
        ("/datastore/label", {"label": GOOD, "tag": "../../../etc"}),
    ]:
        assert server.request("GET", path, params=query).status_code == 404
    assert _outside(root, studies) == outside_files
    assert not list(studies.parent.rglob("evil*")) and (studies / "uploaded.png").is_file()


def test_a_good_label_is_saved_after_all_that(server: LabelServer, studies: Path, tmp_path: Path) -> None:
    label = tmp_path / "label.png"
    mask = np.zeros(size_hw(studies / f"{GOOD}.png"), np.uint8)
    mask[10:40, 20:60] = 1
    Image.fromarray(mask).save(label)
    with open(label, "rb") as f:
        response = server.request(
            "PUT",
            "/datastore/label",
            params={"image": GOOD, "tag": "final"},
            data={"params": json.dumps({"pathology": "benign"})},
            files={"label": ("label.png", f, "image/png")},
        )
    assert response.status_code == 200, response.text
    saved = studies / "labels" / "final" / f"{GOOD}.png"
    assert np.array_equal(np.asarray(Image.open(saved)), mask)
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".tmp-")]
