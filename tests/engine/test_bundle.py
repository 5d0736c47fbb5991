"""Bundle helpers added for cached augmented views: views of items, subsets, encoding a dataset once."""

from __future__ import annotations

import pytest
import torch

from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.bundle import encode_datasets, random_subset, subset, with_views
from radvlsm.errors import RadVLSMInputError


def test_views_repeat_every_item_view_major() -> None:
    items = [{"id": "a"}, {"id": "b"}]
    out = with_views(items, 3)
    assert [(d["id"], d["view"]) for d in out] == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert "view" not in items[0]  # the datalist itself is not changed
    with pytest.raises(RadVLSMInputError):
        with_views(items, 0)


def test_subsets_are_seeded_sorted_and_whole_when_n_is_zero_or_too_large() -> None:
    items = [{"i": i} for i in range(20)]
    picked = subset(items, 5, seed=3)
    assert len(picked) == 5 and picked == subset(items, 5, seed=3) and picked != subset(items, 5, seed=4)
    assert [d["i"] for d in picked] == sorted(d["i"] for d in picked)
    assert subset(items, 0) == items and subset(items, 50) == items
    data = list(range(20))
    sub = random_subset(data, 5, seed=3)
    assert list(sub) == [d["i"] for d in picked]  # one draw for both
    assert random_subset(data, 0) is data and random_subset(data, 20) is data


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return x.repeat(1, 2, 1, 1)


def test_encoding_a_dataset_fills_the_cache_once() -> None:
    encoder = _Encoder()
    images = [{"image": torch.rand(1, 8, 8)} for _ in range(5)]
    cache = EmbeddingCache(max_items=10)
    assert encode_datasets([images[:3], images[3:]], cache, encoder, batch_size=2) == {"found": 0, "computed": 5}
    assert encode_datasets([images], cache, encoder, batch_size=2) == {"found": 5, "computed": 0}
    assert encoder.images == 5


class _Evaluator:
    """Stands in for the box evaluator: each run reports the next validation Dice, and keeps the best."""

    def __init__(self, scores: list[float]) -> None:
        from types import SimpleNamespace

        self.scores = list(scores)
        self.state = SimpleNamespace(key_metric_name="val_box_dice", metrics={}, best_metric=-1.0)

    def run(self) -> None:
        score = self.scores.pop(0)
        self.state.metrics = {"val_box_dice": score}
        self.state.best_metric = max(self.state.best_metric, score)


class _Trainer:
    """Stands in for the box trainer: changes the copy's weights, saves them as the best epoch, validates."""

    def __init__(self, model, evaluator: _Evaluator, best_path) -> None:
        self.model, self.evaluator, self.best_path = model, evaluator, best_path

    def run(self) -> None:
        from radvlsm.engine.workflow import stage_modules

        with torch.no_grad():
            self.model.box_decoder.mask_decoder.iou_token.weight.add_(1.0)
        torch.save({"model": stage_modules(self.model, "box").state_dict()}, self.best_path)
        with torch.no_grad():  # the last epoch differs from the best one
            self.model.box_decoder.mask_decoder.iou_token.weight.add_(1.0)
        self.evaluator.run()


@pytest.mark.parametrize(("scores", "chosen"), [([0.80, 0.85], "tuned"), ([0.80, 0.79], "litemedsam")])
def test_box_stage_keeps_the_tuned_copy_only_when_it_beats_litemedsam(tiny_model, tmp_path, scores, chosen) -> None:
    from radvlsm.engine.bundle import run_box_stage

    model = tiny_model(radiomics=False)
    untouched = model.mask_decoder.mask_decoder.iou_token.weight.detach().clone()
    with torch.no_grad():  # a copy tuned before (e.g. the initial weights' own) is not the starting point
        model.box_decoder.mask_decoder.iou_token.weight.add_(5.0)
    evaluator = _Evaluator(scores)
    best = tmp_path / "best.pt"
    report = run_box_stage(model, _Trainer(model, evaluator, best), evaluator, str(best))
    assert report == {
        "box_val_dice_litemedsam": 0.80,
        "box_val_dice": max(scores),
        "box_val_metric": "val_box_dice",
        "box_decoder": chosen,
    }
    kept = model.box_decoder.mask_decoder.iou_token.weight
    torch.testing.assert_close(kept, untouched + (1.0 if chosen == "tuned" else 0.0))  # best epoch, or LiteMedSAM's
    torch.testing.assert_close(model.mask_decoder.mask_decoder.iou_token.weight, untouched)


def test_box_stage_needs_the_box_decoder(tiny_model) -> None:
    from radvlsm.engine.bundle import run_box_stage

    with pytest.raises(ValueError, match="tuned_box_decoder"):
        run_box_stage(tiny_model(radiomics=False, tuned_box_decoder=False), None, None, "unused.pt")
