"""Evaluation and batch inference over several processes, as documented: ``torchrun`` with the bundle's
``multi_gpu_evaluate.json`` / ``multi_gpu_inference.json`` on 2 CPU ranks (gloo), tiny network, phantom data.

The merged ``metrics.json`` must equal a single-process evaluation's, each rank must have written its own
part, and the merged predictions must equal a single-process inference run's.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from radvlsm.data.phantom import generate_phantom_dataset
from radvlsm.models.build import build_radvlsm, trained_state_dict

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"
CONFIGS = BUNDLE / "configs"
TINY = {"variant": "tiny", "text_encoder": "tiny", "embed_dim": 32}
N_IMAGES = 6
METRIC_KEYS = ("n_images", "dice", "iou", "hd95", "auc", "accuracy", "sensitivity", "specificity", "dice_box")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundle_run(tmp: Path, run_id: str, configs: list[str], args: list[str], ranks: int = 1) -> str:
    """``python -m monai.bundle run`` (under ``torchrun`` with ``ranks`` > 1); the combined log."""
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={_free_port()}"]
        launcher += ["--tee", "3"]
    tiny = [a for k, v in TINY.items() for a in (f"--network_def#{k}", str(v))]
    cmd = [*launcher, "-m", "monai.bundle", "run", run_id, "--bundle_root", str(BUNDLE)]
    cmd += ["--config_file", str([str(CONFIGS / c) for c in configs]), *tiny, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return log


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A phantom dataset and tiny weights (encoder included, so every process builds the same network)."""
    tmp = tmp_path_factory.mktemp("multi_gpu_eval")
    data = tmp / "data"
    generate_phantom_dataset(data, n_images=N_IMAGES, seed=3)
    network_def = json.loads((CONFIGS / "evaluate.json").read_text())["network_def"]
    kwargs = {k: v for k, v in network_def.items() if k != "_target_"} | TINY
    torch.manual_seed(0)
    weights = tmp / "model.pt"
    torch.save(trained_state_dict(build_radvlsm(**kwargs), include_image_encoder=True), weights)
    return tmp, data, weights


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@pytest.mark.slow
def test_two_ranks_evaluate_to_the_single_process_metrics(setup: tuple[Path, Path, Path]) -> None:
    tmp, data, weights = setup
    common = ["--dataset_dir", str(data), "--split", "all", "--model_path", str(weights), "--n_overlays", "2"]
    bundle_run(tmp, "evaluating", ["evaluate.json"], [*common, "--output_dir", str(tmp / "single")])
    log = bundle_run(
        tmp,
        "evaluating",
        ["train.json", "evaluate.json", "multi_gpu_evaluate.json"],  # as model-zoo bundles document it
        [*common, "--output_dir", str(tmp / "multi")],
        ranks=2,
    )
    single = json.loads((tmp / "single" / "metrics.json").read_text())
    merged = json.loads((tmp / "multi" / "metrics.json").read_text())
    assert merged["n_images"] == N_IMAGES
    for key in METRIC_KEYS:
        assert same(merged[key], single[key]), (key, merged[key], single[key])
    parts = [json.loads((tmp / "multi" / f"rank{r}" / "metrics.json").read_text()) for r in (0, 1)]
    assert sorted(p["n_images"] for p in parts) == [N_IMAGES // 2, N_IMAGES // 2]
    assert "[default0]:" in log and "[default1]:" in log and "rank 1 of 2 evaluates" in log
    per_image = (tmp / "multi" / "per_image.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in per_image] == [
        line.split(",")[0] for line in (tmp / "single" / "per_image.csv").read_text().splitlines()
    ]


@pytest.mark.slow
def test_two_ranks_infer_to_the_single_process_predictions(setup: tuple[Path, Path, Path]) -> None:
    tmp, data, weights = setup
    common = ["--input_dir", str(data / "Images"), "--model_path", str(weights)]
    bundle_run(tmp, "inferring", ["inference.json"], [*common, "--output_dir", str(tmp / "pred_single")])
    configs = ["inference.json", "multi_gpu_inference.json"]
    bundle_run(tmp, "inferring", configs, [*common, "--output_dir", str(tmp / "pred_multi")], ranks=2)
    single = json.loads((tmp / "pred_single" / "summary.json").read_text())
    merged = json.loads((tmp / "pred_multi" / "summary.json").read_text())
    assert merged["n_done"] == single["n_done"] == N_IMAGES
    assert merged["results"].keys() == single["results"].keys()
    for name, result in single["results"].items():
        assert merged["results"][name]["diagnosis"] == result["diagnosis"]
        assert same(merged["results"][name]["malignancy_probability"], result["malignancy_probability"])
    assert sorted(merged["ranks"].values()) == [N_IMAGES // 2, N_IMAGES // 2]
    for name in single["results"]:  # each mask is in the folder of the rank that predicted it
        stem = Path(name).stem
        assert len(list((tmp / "pred_multi").glob(f"rank*/{stem}_mask.png"))) == 1
