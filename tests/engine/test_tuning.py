from __future__ import annotations

import json

import torch

from radvlsm.engine.tuning import tune_mcra


def test_mcra_tuning_reports_the_best_setting_and_leaves_the_model_as_it_was(tiny_model, tmp_path) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False).eval()
    labels = torch.zeros(3, 1, 64, 64)
    labels[:, :, 20:40, 10:35] = 1
    batches = [{"image": torch.rand(3, 1, 64, 64), "label": labels}]
    grid = {"cluster_iou": [0.1, 0.5], "keep_threshold": [0.5, 1.0], "temperature": [1.0, 0.1]}
    before = (model.mcra.cluster_iou, model.mcra.keep_threshold, model.mcra.temperature)
    report = tune_mcra(model, batches, None, "cpu", grid, str(tmp_path / "mcra.json"))
    assert (model.mcra.cluster_iou, model.mcra.keep_threshold, model.mcra.temperature) == before
    assert len(report["table"]) == 8 and report["n_images"] == 3
    assert report["chosen_dice"] == max(row["dice"] for row in report["table"])
    assert json.loads((tmp_path / "mcra.json").read_text())["chosen"] == report["chosen"]
    assert 0.0 <= report["single_best_candidate_dice"] <= 1.0
