"""The ``radvlsm`` command line: reports, phantom data, clear errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from radvlsm.cli import main

TINY = ["--network-def", "variant=tiny", "--network-def", "text_encoder=tiny", "--network-def", "embed_dim=32"]


def test_data_report_counts_classes(phantom_dir, capsys) -> None:
    assert main(["data-report", str(phantom_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 12 and report["n_skipped"] == 0
    assert sum(report["class_counts"].values()) == 12


def test_phantom_command(tmp_path, capsys) -> None:
    assert main(["phantom", "--out", str(tmp_path / "p"), "--n-images", "4"]) == 0
    assert (tmp_path / "p" / "bus_data.csv").is_file()


def test_bad_input_is_one_clear_line(tmp_path, caplog) -> None:
    assert main(["data-report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in caplog.text
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", str(bad), *TINY, "--weights", str(tmp_path / "none.pt")]) == 2
    assert "broken.png: not a readable image" in caplog.text


def test_corrupt_weights_are_refused_with_one_clear_line(phantom_dir, tmp_path, caplog) -> None:
    image = sorted((phantom_dir / "Images").glob("*.png"))[0]
    for name, content in (("empty.pt", b""), ("garbage.pt", b"PK\x03\x04 not a zip" * 50)):
        weights = tmp_path / name
        weights.write_bytes(content)
        caplog.clear()
        assert main(["predict", str(image), *TINY, "--weights", str(weights)]) == 2
        assert f"{weights}: cannot read model weights" in caplog.text
        assert "Traceback" not in caplog.text


def test_network_def_overrides_must_be_key_value(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "x.png", "--network-def", "variant"])
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_and_evaluate_with_the_shipped_model(phantom_dir, tmp_path, capsys) -> None:
    """The README's first commands on the shipped ``model.pt``: they build the bundle's network and exit 0."""
    image = sorted((phantom_dir / "Images").glob("*.png"))[0]
    out = tmp_path / "mask.png"
    assert main(["predict", str(image), "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mask"] == str(out) and summary["diagnosis"] in ("benign", "malignant")
    with Image.open(out) as mask, Image.open(image) as im:
        assert mask.size == im.size and np.asarray(mask).max() == 255  # a lesion was found
    few = tmp_path / "few"
    (few / "Images").mkdir(parents=True)
    (few / "Masks").mkdir()
    rows = (phantom_dir / "bus_data.csv").read_text().splitlines()
    (few / "bus_data.csv").write_text("\n".join(rows[:3]) + "\n")
    for row in rows[1:3]:
        name = row.split(",")[0]
        for folder, prefix in (("Images", "bus_"), ("Masks", "mask_")):
            source = phantom_dir / folder / f"{prefix}{name.removeprefix('bus_')}.png"
            (few / folder / source.name).write_bytes(source.read_bytes())
    assert main(["evaluate", str(few), "--output-dir", str(tmp_path / "eval"), "--n-overlays", "1"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 2 and 0 <= metrics["dice"] <= 1 and 0 <= metrics["dice_box"] <= 1
