"""Stage checkpoints: numeric epoch order, damaged files skipped and moved aside, atomic saving, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from radvlsm.engine.checkpoints import ValidationBest, attach_stage_checkpoints, latest_readable, stage_checkpoints
from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.engine.workflow import build_stage_trainer, make_loader
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import read_torch_file


def fake_checkpoint(path: Path, epoch: int) -> Path:
    torch.save({"model": {}, "optimizer": {}, "trainer": {"epoch": epoch}}, path)
    return path


def test_epochs_sort_as_numbers_and_damaged_newest_files_are_skipped(tmp_path: Path) -> None:
    for epoch in (2, 9, 10):
        fake_checkpoint(tmp_path / f"checkpoint_align_checkpoint_epoch={epoch}.pt", epoch)
    (tmp_path / "checkpoint_align_checkpoint_epoch=x.pt").write_bytes(b"")
    (tmp_path / "checkpoint_segment_checkpoint_epoch=50.pt").write_bytes(b"")
    assert [e for e, _ in stage_checkpoints(tmp_path, "align")] == [10, 9, 2]
    good = (tmp_path / "checkpoint_align_checkpoint_epoch=10.pt").read_bytes()
    (tmp_path / "checkpoint_align_checkpoint_epoch=11.pt").write_bytes(good[: len(good) // 2])  # torn write
    torch.save({"weights": 1}, tmp_path / "checkpoint_align_checkpoint_epoch=12.pt")  # not a training checkpoint
    assert latest_readable(tmp_path, "align") == tmp_path / "checkpoint_align_checkpoint_epoch=10.pt"
    assert (tmp_path / "checkpoint_align_checkpoint_epoch=11.pt.corrupt").is_file()
    assert (tmp_path / "checkpoint_align_checkpoint_epoch=12.pt.corrupt").is_file()
    assert latest_readable(tmp_path, "segment") is None


def tiny_trainer(tiny_model, stage_settings, phantom_dir: Path, epochs: int):
    from radvlsm.engine.bundle import prepare_dataset, prepare_splits

    torch.manual_seed(0)
    model = tiny_model(radiomics=False)
    items = prepare_splits(prepare_dataset(str(phantom_dir)), "all")["all"][:4]
    loader = make_loader(items, "eval", batch_size=2, image_size=model.image_size)
    return build_stage_trainer("align", model, loader, epochs, 1e-3, RadVLSMLoss(), None, "cpu", stage_settings)


def test_a_second_run_continues_from_the_last_epoch_with_optimizer_state(
    tiny_model, stage_settings, phantom_dir: Path, tmp_path: Path
) -> None:
    first = attach_stage_checkpoints(tiny_trainer(tiny_model, stage_settings, phantom_dir, 2), tmp_path, "align")
    first.run()
    assert [e for e, _ in stage_checkpoints(tmp_path, "align")] == [2, 1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp")]  # the atomic saver's temp files
    second = attach_stage_checkpoints(tiny_trainer(tiny_model, stage_settings, phantom_dir, 4), tmp_path, "align")
    started = []
    second.add_event_handler(Events.EPOCH_STARTED, lambda engine: started.append(engine.state.epoch))
    second.run()
    assert started == [3, 4] and second.state.iteration == 4 * 2
    assert second.optimizer.state, "the optimizer's moments were restored and used"
    assert [e for e, _ in stage_checkpoints(tmp_path, "align")] == [4, 3]  # pruned across the restart
    third = attach_stage_checkpoints(
        tiny_trainer(tiny_model, stage_settings, phantom_dir, 1), tmp_path, "align", resume=False
    )
    assert stage_checkpoints(tmp_path, "align") == []
    third.run()
    assert [e for e, _ in stage_checkpoints(tmp_path, "align")] == [1]


def _validated_once(saver: CheckpointSaver, metric: float) -> Engine:
    """An evaluator-like engine whose one epoch scores ``metric``, with ``saver`` keeping the best epoch."""
    engine = Engine(lambda engine, batch: None)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update({"val": metric}))
    saver.attach(engine)
    return engine


def _best_saver(folder: Path, model: torch.nn.Module) -> CheckpointSaver:
    return CheckpointSaver(
        str(folder), {"model": model}, save_key_metric=True, key_metric_name="val", key_metric_filename="best.pt"
    )


def test_a_restored_validation_best_keeps_the_better_best_epoch_file(tmp_path: Path) -> None:
    first, second = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    torch.nn.init.constant_(first.weight, 1.0)
    torch.nn.init.constant_(second.weight, 2.0)
    _validated_once(_best_saver(tmp_path, first), 0.8).run([0], max_epochs=1)
    earlier = Engine(lambda engine, batch: None)
    earlier.state.best_metric, earlier.state.best_metric_epoch = 0.8, 1
    state = ValidationBest(earlier).state_dict()
    assert state == {"best_metric": 0.8, "best_metric_epoch": 1}

    saver = _best_saver(tmp_path, second)
    resumed = _validated_once(saver, 0.5)
    ValidationBest(resumed, saver).load_state_dict(state)
    resumed.run([0], max_epochs=1)
    assert resumed.state.best_metric == 0.8 and resumed.state.best_metric_epoch == 1
    assert float(torch.load(tmp_path / "best.pt")["weight"]) == 1.0, "a worse epoch replaced the best file"

    _validated_once(_best_saver(tmp_path, second), 0.5).run([0], max_epochs=1)  # no restored best: replaced
    assert float(torch.load(tmp_path / "best.pt")["weight"]) == 2.0


def test_a_resumed_stage_gets_back_its_validation_best(
    tiny_model, stage_settings, phantom_dir: Path, tmp_path: Path
) -> None:
    validator = Engine(lambda engine, batch: None)
    validator.state.best_metric, validator.state.best_metric_epoch = 0.7, 2
    trainer = tiny_trainer(tiny_model, stage_settings, phantom_dir, 2)
    attach_stage_checkpoints(trainer, tmp_path, "align", evaluator=validator).run()
    assert read_torch_file(latest_readable(tmp_path, "align"))["validation_best"] == {
        "best_metric": 0.7,
        "best_metric_epoch": 2,
    }
    fresh = Engine(lambda engine, batch: None)
    fresh.state.best_metric, fresh.state.best_metric_epoch = -1.0, -1
    again = attach_stage_checkpoints(
        tiny_trainer(tiny_model, stage_settings, phantom_dir, 2), tmp_path, "align", evaluator=fresh
    )
    again.run()  # finished already: nothing is trained, the best is restored
    assert (fresh.state.best_metric, fresh.state.best_metric_epoch) == (0.7, 2)


def test_a_resumed_stage_continues_its_learning_rate_schedule(
    tiny_model, stage_settings, phantom_dir: Path, tmp_path: Path
) -> None:
    from radvlsm.engine.bundle import prepare_dataset, prepare_splits

    items = prepare_splits(prepare_dataset(str(phantom_dir)), "all")["all"][:4]

    def focus_trainer(folder: Path, stop_after: int | None = None, epochs: int = 4):
        torch.manual_seed(0)
        model = tiny_model(radiomics=False)
        loader = make_loader(items, "eval", batch_size=1, image_size=model.image_size)
        trainer = build_stage_trainer(
            "focus", model, loader, epochs, 1e-2, RadVLSMLoss(), None, "cpu", stage_settings, lr_schedule="one_cycle"
        )
        attach_stage_checkpoints(trainer, folder, "focus")
        if stop_after is not None:
            trainer.add_event_handler(Events.EPOCH_COMPLETED(once=stop_after), lambda engine: engine.terminate())
        rates: list[float] = []
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: rates.append(e.optimizer.param_groups[0]["lr"]))
        return trainer, rates

    straight, straight_rates = focus_trainer(tmp_path / "straight")
    straight.run()
    interrupted, first_rates = focus_trainer(tmp_path / "resumed", stop_after=2)
    interrupted.run()
    assert "lr_scheduler" in read_torch_file(stage_checkpoints(tmp_path / "resumed", "focus")[0][1])
    resumed, resumed_rates = focus_trainer(tmp_path / "resumed")
    resumed.run()
    assert len(first_rates) == 8 and len(resumed_rates) == 8
    assert first_rates + resumed_rates == pytest.approx(straight_rates, rel=1e-9)

    # the same checkpoint with more epochs asked for: a clear error before any iteration, not one mid-stage
    longer, longer_rates = focus_trainer(tmp_path / "resumed", epochs=6)
    with pytest.raises(RadVLSMInputError, match="schedule is 16 iterations long, but this run asks for 24"):
        longer.run()
    assert longer_rates == []
