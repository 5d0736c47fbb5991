"""radvlsm.engine.workflow: which parts each stage trains, its optimiser, the stage order, loaders and evaluators.

Runs on the phantom with the tiny network (one epoch per stage, a handful of images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from torch import nn

from radvlsm.config import build_network, bundle_parser
from radvlsm.data.datalist import load_dataset
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.engine.workflow import (
    STAGE_MODULES,
    StageSettings,
    build_stage_trainer,
    collect_fusion_inputs,
    fit_fusion,
    make_loader,
    stage_modules,
    stage_parameters,
)

SETTINGS = StageSettings(weight_decay=1e-4, head_lr_mult=10.0, box_jitter=0.1, max_points=3)


def _tiny(radiomics: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return build_network(variant="tiny", text_encoder="tiny", embed_dim=32, radiomics=radiomics)


@pytest.fixture(scope="module")
def items(phantom_dir: Path) -> list[dict]:
    """Four phantom items, two of each class."""
    report = load_dataset(phantom_dir)
    by_class = [[i for i in report.items if i["diagnosis"] == d][:2] for d in (0, 1)]
    return by_class[0] + by_class[1]


def _snapshot(model: nn.Module, part: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in getattr(model, part).state_dict().items()}


def _changed(model: nn.Module, part: str, before: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in getattr(model, part).state_dict().items())


@pytest.fixture(scope="module")
def with_radiomics() -> nn.Module:
    return _tiny(radiomics=True)


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stage_parameters_are_exactly_the_stage_modules(with_radiomics: nn.Module, stage: str) -> None:
    model = with_radiomics
    params = stage_parameters(model, stage)
    parts = [getattr(model, name) for name in STAGE_MODULES[stage] if getattr(model, name, None) is not None]
    expected = {id(p) for part in parts for p in part.parameters()}
    assert params and {id(p) for p in params} == expected
    assert {id(p) for p in model.parameters() if p.requires_grad} == expected


def test_stage_modules_names_and_checks() -> None:
    model = _tiny()
    assert set(stage_modules(model, "segment")) == {"auto_decoder", "reliability_head", "diagnosis_head", "mcra"}
    assert set(stage_modules(model, "prompts")) == {"learned_prompts"}
    assert "image_encoder" in stage_modules(model, "segment", train_encoder=True)
    assert "image_encoder" not in stage_modules(model, "align", train_encoder=True)
    assert len(stage_modules(model, "fusion")) == 0  # no radiomics: no fusion head
    with pytest.raises(ValueError, match="unknown stage"):
        stage_modules(model, "pretrain")
    with pytest.raises(ValueError, match="nothing to train"):
        build_stage_trainer("fusion", model, [], 1, 1e-3, RadVLSMLoss(), None, "cpu", SETTINGS)


def test_optimizer_groups_give_the_new_heads_a_larger_learning_rate(items: list[dict]) -> None:
    model = _tiny()
    loader = make_loader(items, "eval", batch_size=2, image_size=model.image_size)
    settings = StageSettings(weight_decay=0.01, head_lr_mult=10.0, box_jitter=0.1, max_points=3)
    segment = build_stage_trainer("segment", model, loader, 1, 1e-3, RadVLSMLoss(), None, "cpu", settings)
    decoder, heads = segment.optimizer.param_groups
    assert decoder["lr"] == pytest.approx(1e-3) and heads["lr"] == pytest.approx(1e-2)
    assert {id(p) for p in decoder["params"]} == {id(p) for p in model.auto_decoder.parameters()}
    assert not any(p.requires_grad for p in model.mask_decoder.parameters())  # user boxes: never tuned
    assert decoder["weight_decay"] == heads["weight_decay"] == 0.01
    align = build_stage_trainer("align", model, loader, 3, 1e-3, RadVLSMLoss(), None, "cpu", settings)
    (only,) = align.optimizer.param_groups  # nothing pretrained in this stage: one group at lr
    assert only["lr"] == pytest.approx(1e-3) and align.state.max_epochs == 3


def test_stages_in_order_each_change_only_their_own_parts(items: list[dict]) -> None:
    model = _tiny()
    loader = make_loader(items, "eval", batch_size=4, shuffle=True, image_size=model.image_size)
    cache = EmbeddingCache(100)
    parts = (
        "aligner",
        "focus",
        "learned_prompts",
        "mask_decoder",
        "auto_decoder",
        "reliability_head",
        "diagnosis_head",
        "region_prompt",
        "image_encoder",
    )
    for stage in ("align", "focus", "prompts", "segment", "region"):
        before = {p: _snapshot(model, p) for p in parts}
        trainer = build_stage_trainer(stage, model, loader, 1, 1e-3, RadVLSMLoss(), cache, "cpu", SETTINGS, seed=0)
        trainer.run()
        assert trainer.state.epoch == 1 and trainer.state.iteration == 1
        assert torch.isfinite(torch.as_tensor(trainer.state.output["loss"]))
        trained = {p for p in parts if _changed(model, p, before[p])}
        own = {p for p in parts if p in STAGE_MODULES[stage]}
        # region_prompt's zero-initialised last layer moves first; other region weights may stay at first
        assert trained <= own and trained, (stage, trained)
    assert len(cache) == len(items)  # the frozen encoder ran once per image across the five stages


def test_one_cycle_schedule_warms_up_then_decays_to_zero(items: list[dict]) -> None:
    model = _tiny()
    loader = make_loader(items, "eval", batch_size=1, image_size=model.image_size)
    seen: list[float] = []
    trainer = build_stage_trainer(
        "focus", model, loader, 5, 1e-2, RadVLSMLoss(), EmbeddingCache(100), "cpu", SETTINGS, lr_schedule="one_cycle"
    )
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.optimizer.param_groups[0]["lr"]))
    trainer.run()
    steps = 5 * len(loader)  # 20: two warm-up steps
    assert len(seen) == steps and trainer.lr_scheduler is not None
    peak = int(np.argmax(seen))
    assert seen[0] < 1e-2 / 10 and seen[peak] == pytest.approx(1e-2) and 0 < peak < steps // 2
    assert all(a >= b for a, b in zip(seen[peak:], seen[peak + 1 :], strict=False))  # cosine decay after the peak
    assert trainer.optimizer.param_groups[0]["lr"] < 1e-2 / 100  # near zero at the end
    constant = build_stage_trainer("focus", model, loader, 1, 1e-3, RadVLSMLoss(), None, "cpu", SETTINGS)
    assert constant.lr_scheduler is None
    with pytest.raises(ValueError, match="lr_schedule"):
        build_stage_trainer("focus", model, loader, 1, 1e-3, RadVLSMLoss(), None, "cpu", SETTINGS, lr_schedule="step")


def test_loaders_are_reproducible_and_shaped(items: list[dict]) -> None:
    first = [b["id"] for b in make_loader(items, "eval", batch_size=3, shuffle=True, image_size=64, seed=5)]
    again = [b["id"] for b in make_loader(items, "eval", batch_size=3, shuffle=True, image_size=64, seed=5)]
    assert first == again and sorted(i for ids in first for i in ids) == sorted(i["id"] for i in items)
    batch = next(iter(make_loader(items, "eval", batch_size=3, image_size=64)))
    assert tuple(batch["image"].shape) == (3, 1, 64, 64) and tuple(batch["label"].shape) == (3, 1, 64, 64)
    assert [int(d) for d in batch["diagnosis"]] == [i["diagnosis"] for i in items[:3]]


def test_declared_evaluator_reports_dice_as_key_metric_and_auc(phantom_dir: Path, tmp_path: Path) -> None:
    """The evaluator ``train.json`` declares (key metric ``val_dice``, plus ``val_auc``) runs on the tiny network."""
    overrides = {
        "network_def#variant": "tiny",
        "network_def#text_encoder": "tiny",
        "network_def#embed_dim": 32,
        "network_def#radiomics": False,
        "dataset_dir": str(phantom_dir),
        "output_dir": str(tmp_path),
        "val_handlers": [],
    }
    evaluator = bundle_parser(config="train.json", overrides=overrides).get_parsed_content("evaluator")
    evaluator.run()
    metrics = evaluator.state.metrics
    assert evaluator.state.key_metric_name == "val_dice" and set(metrics) == {"val_dice", "val_auc"}
    assert 0.0 <= metrics["val_dice"] <= 1.0 and (
        metrics["val_auc"] != metrics["val_auc"] or 0 <= metrics["val_auc"] <= 1
    )


def test_fusion_inputs_and_fit(items: list[dict]) -> None:
    with pytest.raises(ValueError, match="radiomics"):
        collect_fusion_inputs(_tiny(), [])
    model = _tiny(radiomics=True)
    inputs = collect_fusion_inputs(model, make_loader(items, "eval", batch_size=2, image_size=model.image_size))
    n, r = len(items), model.radiomics.n_features
    assert inputs["visual_logits"].shape == (n, 2) and inputs["radiomics"].shape == (n, r)
    assert inputs["visual_emb"].shape[0] == n and inputs["diagnosis"].tolist() == [i["diagnosis"] for i in items]
    # a radiomics feature that separates the classes: the fusion head learns it, the standardiser is fitted
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 8)
    radiomics = torch.randn(16, r, generator=g) + 3.0 * labels[:, None]
    made = {
        "visual_emb": torch.randn(16, inputs["visual_emb"].shape[1], generator=g),
        "visual_logits": torch.zeros(16, 2),
        "radiomics": radiomics,
        "diagnosis": labels,
    }
    result = fit_fusion(model, made, epochs=60, lr=1e-2, weight_decay=1e-3)
    assert result["fusion_ce_before"] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    assert result["fusion_ce_after"] < 0.5 * result["fusion_ce_before"]
    torch.testing.assert_close(model.standardizer.mean, radiomics.mean(0), atol=1e-5, rtol=1e-5)
    assert model.fusion.gate != 0.0
