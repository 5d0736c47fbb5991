"""One model, one configuration: the CLI, the bundle's ``inferring`` and the MONAI Label auto task agree.

All three build the network from the bundle's ``inference.json`` and load the shipped ``model.pt``, so one
image gets the same mask and the same malignancy probability from each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from label_server import parse_infer
from PIL import Image

from radvlsm.cli import main

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"


@pytest.mark.slow
def test_cli_bundle_and_server_give_the_same_answer(
    phantom_dir: Path, tmp_path: Path, label_server: Callable, capsys: pytest.CaptureFixture
) -> None:
    image = sorted((phantom_dir / "Images").glob("*.png"))[0]
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(image, studies / image.name)

    assert main(["predict", str(image), "--output", str(tmp_path / "cli_mask.png")]) == 0
    cli = json.loads(capsys.readouterr().out)
    with Image.open(tmp_path / "cli_mask.png") as im:
        cli_mask = np.asarray(im) > 0

    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "inferring",
        "--bundle_root", str(BUNDLE),
        "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--input_dir", str(studies), "--output_dir", str(tmp_path / "bundle"),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    bundle = json.loads((tmp_path / "bundle" / f"{image.stem}.json").read_text())
    with Image.open(tmp_path / "bundle" / f"{image.stem}_mask.png") as im:
        bundle_mask = np.asarray(im) > 0

    models = tmp_path / "server" / "models"
    models.mkdir(parents=True)
    shutil.copy(BUNDLE / "models" / "model.pt", models / "model.pt")
    with label_server(studies, tmp_path / "server", {}) as server:
        served, label = parse_infer(server.infer("radvlsm_auto", image.stem))
    assert served["model"]["trained"] is True

    assert cli_mask.any(), "the shipped model finds the phantom lesion"
    assert np.array_equal(cli_mask, bundle_mask) and np.array_equal(cli_mask, label > 0)
    for other in (bundle, served):
        assert abs(other["malignancy_probability"] - cli["malignancy_probability"]) < 1e-5, other
        assert other["diagnosis"] == cli["diagnosis"]
