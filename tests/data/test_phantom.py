"""The synthetic breast-ultrasound phantom: layout, format, determinism, lesion appearance, idempotence."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from radvlsm.data.phantom import (
    CSV_COLUMNS,
    DEVICE,
    HISTOLOGIES,
    ensure_phantom_dataset,
    generate_phantom_dataset,
    generate_phantom_image,
    main,
)
from radvlsm.errors import RadVLSMInputError

BBOX_RE = re.compile(r"^\[\d+,\d+,\d+,\d+\]$")


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "bus_data.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _load(root: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = Image.open(root / "Images" / f"{image_id}.png")
    mask = Image.open(root / "Masks" / f"{image_id.replace('bus_', 'mask_')}.png")
    assert image.mode == "L" and mask.mode == "L"
    return np.asarray(image), np.asarray(mask)


def _mask_bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger phantom (40 images, 20 cases) for statistics over lesion appearance."""
    out = tmp_path_factory.mktemp("phantom_stats")
    return generate_phantom_dataset(out, n_images=40, seed=3, malignant_fraction=0.4)


def test_layout_and_csv_format(phantom_dir: Path) -> None:
    raw = (phantom_dir / "bus_data.csv").read_bytes()
    assert raw.startswith(b"ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX\r\n")
    rows = _rows(phantom_dir)
    assert len(rows) == 12
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert b'"[' in raw  # BBOX is csv-quoted like the real file
    for row in rows:
        assert re.fullmatch(r"bus_\d{4}-[lr]", row["ID"])
        assert row["Device"] == DEVICE
        assert row["Histology"] in HISTOLOGIES[row["Pathology"]]
        assert BBOX_RE.match(row["BBOX"]), row["BBOX"]
        image, mask = _load(phantom_dir, row["ID"])
        assert image.dtype == np.uint8 and image.shape == (int(row["Height"]), int(row["Width"]))
        assert mask.shape == image.shape
        assert set(np.unique(mask).tolist()) == {0, 255}
        assert json.loads(row["BBOX"]) == _mask_bbox(mask)
        assert 200 <= image.shape[0] <= 400 and 200 <= image.shape[1] <= 400


def test_cases_have_two_sides_with_shared_labels(phantom_dir: Path) -> None:
    by_case: dict[str, list[dict[str, str]]] = {}
    for row in _rows(phantom_dir):
        by_case.setdefault(row["Case"], []).append(row)
    assert len(by_case) == 6
    for case, rows in by_case.items():
        assert sorted(r["Side"] for r in rows) == ["left", "right"]
        assert {r["ID"] for r in rows} == {f"bus_{int(case):04d}-l", f"bus_{int(case):04d}-r"}
        for key in ("Pathology", "Histology", "BIRADS", "Height"):
            assert len({r[key] for r in rows}) == 1, (case, key)


def test_birads_ranges_and_both_orientations(stats_dir: Path) -> None:
    rows = _rows(stats_dir)
    benign = [int(r["BIRADS"]) for r in rows if r["Pathology"] == "benign"]
    malignant = [int(r["BIRADS"]) for r in rows if r["Pathology"] == "malignant"]
    assert set(benign) <= {2, 3, 4} and set(malignant) <= {4, 5}
    assert np.mean([b <= 3 for b in benign]) > 0.5
    shapes = [(int(r["Height"]), int(r["Width"])) for r in rows]
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)


def test_same_seed_identical_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _all_bytes(generate_phantom_dataset(tmp_path / "a", n_images=4, seed=7))
    b = _all_bytes(generate_phantom_dataset(tmp_path / "b", n_images=4, seed=7))
    c = _all_bytes(generate_phantom_dataset(tmp_path / "c", n_images=4, seed=8))
    assert set(a) == {
        "bus_data.csv",
        "phantom.json",
        "Images/bus_0001-l.png",
        "Images/bus_0001-r.png",
        "Images/bus_0002-l.png",
        "Images/bus_0002-r.png",
        "Masks/mask_0001-l.png",
        "Masks/mask_0001-r.png",
        "Masks/mask_0002-l.png",
        "Masks/mask_0002-r.png",
    }
    assert a == b
    assert a["Images/bus_0001-l.png"] != c["Images/bus_0001-l.png"]
    assert a["bus_data.csv"] != c["bus_data.csv"]


def test_pathology_fraction(stats_dir: Path, phantom_dir: Path) -> None:
    for root, n_cases in ((stats_dir, 20), (phantom_dir, 6)):
        labels = [r["Pathology"] for r in _rows(root)]
        assert set(labels) == {"benign", "malignant"}
        assert abs(labels.count("malignant") / len(labels) - 0.4) <= 1.0 / n_cases


def test_malignant_taller_than_wide_benign_wider(stats_dir: Path) -> None:
    aspect: dict[str, list[float]] = {"benign": [], "malignant": []}
    for row in _rows(stats_dir):
        _, _, w, h = json.loads(row["BBOX"])
        aspect[row["Pathology"]].append(h / w)
    assert np.mean(aspect["malignant"]) > 1.1
    assert np.mean(aspect["benign"]) < 0.9


def _posterior_ratio(image: np.ndarray, bbox: list[int]) -> float:
    """Mean intensity just below the lesion over that of the tissue beside it (same rows)."""
    x, y, w, h = bbox
    y0 = y + h + 2
    y1 = min(y0 + max(h // 2, 8), image.shape[0])
    img = image.astype(np.float64)
    below = img[y0:y1, x + w // 4 : x + 3 * w // 4].mean()
    beside = np.concatenate([img[y0:y1, max(x - w, 0) : x].ravel(), img[y0:y1, x + w : x + 2 * w].ravel()])
    return float(below / beside.mean())


def test_posterior_shadow_and_enhancement(stats_dir: Path) -> None:
    ratios: dict[str, list[float]] = {"benign": [], "malignant": []}
    for row in _rows(stats_dir):
        image, _ = _load(stats_dir, row["ID"])
        ratios[row["Pathology"]].append(_posterior_ratio(image, json.loads(row["BBOX"])))
    assert np.mean(ratios["malignant"]) < 0.9 < 1.05 < np.mean(ratios["benign"])


def test_lesion_darker_than_surroundings(stats_dir: Path) -> None:
    for row in _rows(stats_dir)[:10]:
        image, mask = _load(stats_dir, row["ID"])
        x, y, w, h = json.loads(row["BBOX"])
        ring = np.zeros_like(mask, dtype=bool)
        ring[max(y - h // 2, 0) : y + h + h // 2, max(x - w // 2, 0) : x + w + w // 2] = True
        ring &= mask == 0
        assert image[mask > 0].mean() < image[ring].mean(), row["ID"]


@settings(max_examples=12, deadline=None)
@given(
    pathology=st.sampled_from(["benign", "malignant"]),
    h=st.integers(64, 220),
    w=st.integers(64, 220),
    seed=st.integers(0, 2**32 - 1),
)
def test_generate_phantom_image_contract(pathology: str, h: int, w: int, seed: int) -> None:
    image, mask, meta = generate_phantom_image(np.random.default_rng(seed), pathology, (h, w))
    assert image.dtype == np.uint8 and mask.dtype == np.uint8
    assert image.shape == mask.shape == (h, w)
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert meta["bbox"] == _mask_bbox(mask)
    x, y, bw, bh = meta["bbox"]
    assert x > 0 and y > 0 and x + bw < w and y + bh < h  # the whole lesion is inside the image
    assert meta["histology"] in HISTOLOGIES[pathology]
    assert meta["birads"] in (2, 3, 4, 5)


def test_generate_phantom_image_keeps_given_labels() -> None:
    rng = np.random.default_rng(0)
    _, _, meta = generate_phantom_image(rng, "benign", (120, 150), histology="cyst", birads=3)
    assert (meta["histology"], meta["birads"], meta["pathology"]) == ("cyst", 3, "benign")


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        ({"pathology": "unknown", "size": (100, 100)}, "pathology"),
        ({"pathology": "benign", "size": (10, 100)}, "size"),
        ({"pathology": "benign", "size": (100,)}, "size"),
        ({"pathology": "benign", "size": (100, 100), "histology": "invasive ductal carcinoma"}, "histology"),
        ({"pathology": "malignant", "size": (100, 100), "birads": 7}, "birads"),
    ],
)
def test_generate_phantom_image_rejects_bad_input(kwargs: dict, source: str) -> None:
    with pytest.raises(RadVLSMInputError, match=source):
        generate_phantom_image(np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_images": 0}, {"n_images": 2.5}, {"seed": -1}, {"malignant_fraction": 1.5}],
)
def test_generate_dataset_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(RadVLSMInputError):
        generate_phantom_dataset(tmp_path / "out", **kwargs)


def test_refuses_to_overwrite_foreign_dataset(tmp_path: Path) -> None:
    (tmp_path / "bus_data.csv").write_text(",".join(CSV_COLUMNS) + "\nbus_0001-l,1,cyst,benign,2,GE,10,10,left,x\n")
    with pytest.raises(RadVLSMInputError, match="refusing"):
        generate_phantom_dataset(tmp_path, n_images=2)
    assert "GE" in (tmp_path / "bus_data.csv").read_text()


def test_odd_count_ends_with_single_side(tmp_path: Path) -> None:
    rows = _rows(generate_phantom_dataset(tmp_path, n_images=3, seed=1))
    assert [(r["ID"], r["Side"]) for r in rows] == [
        ("bus_0001-l", "left"),
        ("bus_0001-r", "right"),
        ("bus_0002-s", "single"),
    ]


def test_ensure_is_idempotent_and_regenerates_on_change(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    assert ensure_phantom_dataset(out, n_images=6, seed=0) == str(out)
    csv_path, image = out / "bus_data.csv", out / "Images" / "bus_0001-l.png"
    stamps = (csv_path.stat().st_mtime_ns, image.stat().st_mtime_ns)
    assert json.loads((out / "phantom.json").read_text())["n_images"] == 6

    assert ensure_phantom_dataset(out, n_images=6, seed=0) == str(out)
    assert (csv_path.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps

    ensure_phantom_dataset(out, n_images=4, seed=0)
    assert len(_rows(out)) == 4
    assert json.loads((out / "phantom.json").read_text())["n_images"] == 4
    assert not (out / "Images" / "bus_0003-l.png").exists()  # stale files of the bigger set removed
    assert len(list((out / "Masks").glob("*.png"))) == 4


def test_ensure_regenerates_incomplete_folder(tmp_path: Path) -> None:
    out = Path(ensure_phantom_dataset(tmp_path / "ph", n_images=2, seed=0))
    (out / "phantom.json").unlink()  # as if generation stopped after the CSV
    ensure_phantom_dataset(out, n_images=2, seed=0)
    assert (out / "phantom.json").is_file()
    (out / "Masks" / "mask_0001-r.png").unlink()
    ensure_phantom_dataset(out, n_images=2, seed=0)
    assert (out / "Masks" / "mask_0001-r.png").is_file()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--n-images" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "cli"), "--n-images", "2", "--seed", "1"]) == 0
    assert len(_rows(tmp_path / "cli")) == 2
    assert main(["--out", str(tmp_path / "cli"), "--n-images", "0"]) == 2


@pytest.mark.realdata
def test_csv_header_matches_real_busbra(busbra_dir: Path, phantom_dir: Path) -> None:
    real = (busbra_dir / "bus_data.csv").read_bytes().split(b"\n", 2)
    ours = (phantom_dir / "bus_data.csv").read_bytes().split(b"\n", 2)
    assert ours[0] == real[0]  # same header and line ending
    real_bbox = next(csv.DictReader((busbra_dir / "bus_data.csv").open(newline="")))["BBOX"]
    assert BBOX_RE.match(real_bbox) and BBOX_RE.match(_rows(phantom_dir)[0]["BBOX"])
