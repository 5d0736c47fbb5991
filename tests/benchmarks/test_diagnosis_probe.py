"""``benchmarks/diagnosis_probe.py``: linear probes and fusion refits on the fusion stage's own features."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from radvlsm.data.busbra import read_busbra
from radvlsm.engine.bundle import save_model

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))  # diagnosis_probe imports its sibling scripts
import diagnosis_probe

BUNDLE = str(Path(__file__).parents[2] / "bundles" / "radvlsm_breast_us")
TINY = {"network_def#variant": "tiny", "network_def#text_encoder": "tiny", "network_def#embed_dim": 32}


def test_logistic_probe_separates_and_its_penalty_shrinks() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(size=(40, 3)) + 3.0 * y[:, None] * np.array([1.0, 0.0, 0.0])
    _, weak = diagnosis_probe.logistic_probe(x, y, x, l2=1e-4)
    _, strong = diagnosis_probe.logistic_probe(x, y, x, l2=100.0)
    assert ((weak > 0.5) == y).mean() > 0.9  # separable along the first feature
    assert np.abs(strong - 0.5).max() < np.abs(weak - 0.5).max()  # a heavier penalty pulls towards the prior
    assert np.abs(strong - 0.5).max() < 0.1


def test_probe_arguments_overrides_and_summary(tmp_path: Path) -> None:
    parser = diagnosis_probe.probe_arguments("probe")
    out = tmp_path / "deep" / "probe.json"
    args = parser.parse_args(["--dataset_dir", "D", "--split_file", "S.json", "--model_path", "M", "--out", str(out)])
    assert args.bundle_root == "bundles/radvlsm_breast_us" and args.threads == 0
    overrides = diagnosis_probe.probe_overrides(args, "probe_run")
    assert overrides == {"dataset_dir": "D", "split_file": "S.json", "output_dir": str(out.parent / "probe_run")}
    assert diagnosis_probe.probe_overrides(args, "probe_run", "elsewhere")["output_dir"] == "elsewhere"
    summary = {"rows": {"a": {"validation_auc": {"mean": 0.75, "ci95": [0.5, 1.0]}, "train_auc": 0.9}}}
    diagnosis_probe.finish(summary, out)  # creates the missing folder
    assert json.loads(out.read_text()) == summary


def test_probes_run_on_the_fusion_stage_inputs(phantom_dir: Path, tiny_model, tmp_path: Path) -> None:
    items = read_busbra(phantom_dir, validate=False).items
    validation = ["bus_0002-l", "bus_0002-r", "bus_0004-l", "bus_0004-r"]  # two benign, two malignant
    assert sorted(item["diagnosis"] for item in items if item["id"] in validation) == [0, 0, 1, 1]
    training = [item["id"] for item in items if item["id"] not in validation]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"training": training, "validation": validation, "test": []}))
    model_path = save_model(tiny_model(), str(tmp_path / "model.pt"))
    overrides = {**TINY, "dataset_dir": str(phantom_dir), "split_file": str(split), "output_dir": str(tmp_path / "run")}
    out = diagnosis_probe.run(BUNDLE, model_path, overrides, seeds=2, l2_grid=(0.1,))
    assert out["n_train"] == 8 and out["n_validation"] == 4
    assert out["fusion_recipe"]["epochs"] > 0
    names = set(out["rows"])
    assert {"shipped_visual", "shipped_fused", "refit_fusion_seed0", "refit_fusion_seed1"} <= names
    assert {"logistic_visual_l2_0.1", "logistic_radiomics_l2_0.1", "logistic_visual+radiomics_l2_0.1"} <= names
    assert out["rows"]["shipped_fused"]["difference_to_shipped_fused"]["mean"] == 0.0
    for row in out["rows"].values():  # both classes in each split: every AUC is a number
        assert 0.0 <= row["validation_auc"]["mean"] <= 1.0 and 0.0 <= row["train_auc"] <= 1.0
        low, high = row["difference_to_shipped_fused"]["ci95"]
        assert low <= high
