"""``scripts/gpu_smoke.sh`` in CPU mode with the tiny network: every step runs and reports its time.

On a CUDA machine the same script runs everything on the GPU; here (no GPU) it must say it runs on the CPU,
train, infer and evaluate through the bundle, and get an automatic and an interactive answer from the
MONAI Label server serving the weights it just trained.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("train", "bundle_inference", "bundle_evaluation", "server_start", "radvlsm_auto", "radvlsm_interactive")


@pytest.mark.slow
def test_smoke_script_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "SMOKE_TINY": "1", "SMOKE_IMAGES": "12", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_smoke.sh"), str(tmp_path / "smoke")],
        capture_output=True, text=True, timeout=900, env=env, cwd=ROOT,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device: {expected_device}" in log
    for step in STEPS:
        assert re.search(rf"^{step}\s+\d+\.\d s", log, re.M), (step, log[-3000:])
    assert "HTTP 200" in log and "trained weights True" in log and log.rstrip().endswith("smoke run passed")
    out = tmp_path / "smoke"
    assert (out / "train" / "model.pt").is_file()
    assert json.loads((out / "eval" / "metrics.json").read_text())["n_images"] == 12
    assert json.loads((out / "predictions" / "summary.json").read_text())["n_done"] == 12
