"""Per-stage training checkpoints: written atomically every epoch, and the newest readable one resumed.

Each stage (``align``, ``segment``) saves its trained modules, optimiser and trainer state (epoch,
iteration) after every epoch as ``checkpoint_<stage>_checkpoint_epoch=<n>.pt`` in the run folder, through
ignite's :class:`~ignite.handlers.Checkpoint` with an atomic :class:`~ignite.handlers.DiskSaver` (temporary
file, then rename), keeping the last two. A training run killed at any moment (mid-epoch, or while a
checkpoint is written) and started again with the same run folder continues from the newest checkpoint
that loads, with MONAI's :class:`~monai.handlers.CheckpointLoader`: the interrupted epoch is redone, the
finished ones are not. A stage validated every epoch also saves its validation best so far
(:class:`ValidationBest`), so that a resumed run neither replaces the best-epoch file with a worse epoch nor
reports a best metric of -1 for a stage that had already finished.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver

from radvlsm.engine.workflow import stage_modules
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import read_torch_file

logger = logging.getLogger(__name__)

N_SAVED = 2


def checkpoint_prefix(stage: str) -> str:
    """File-name prefix of a stage's checkpoints."""
    return f"checkpoint_{stage}"


def stage_checkpoints(folder: str | Path, stage: str) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of a stage's checkpoints in ``folder``, newest (highest epoch) first."""
    pattern = re.compile(rf"^{re.escape(checkpoint_prefix(stage))}_checkpoint_epoch=(\d+)\.pt$")
    found = []
    for path in Path(folder).glob(f"{checkpoint_prefix(stage)}_checkpoint_epoch=*.pt"):
        match = pattern.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def _latest_readable_keys(folder: str | Path, stage: str) -> tuple[Path, set[str]] | None:
    """The newest loadable checkpoint of ``stage`` and its top-level keys (see :func:`latest_readable`)."""
    for epoch, path in stage_checkpoints(folder, stage):
        try:
            state = read_torch_file(path)
            usable = isinstance(state, dict) and {"model", "optimizer", "trainer"} <= set(state)
            problem = "lacks model/optimizer/trainer state"
        except RadVLSMInputError as exc:
            usable, problem = False, f"cannot be read ({exc})"
        if usable:
            return path, set(state)
        aside = path.with_name(path.name + ".corrupt")
        logger.error("checkpoint %s (epoch %d) %s: moved aside to %s", path, epoch, problem, aside.name)
        path.replace(aside)
    return None


def latest_readable(folder: str | Path, stage: str) -> Path | None:
    """The newest checkpoint of ``stage`` that loads; None if none.

    Newer files that do not load (a run killed while a non-atomic writer wrote them, a full disk) are
    logged and renamed to ``<name>.corrupt``, so that they are neither resumed nor counted again.
    """
    found = _latest_readable_keys(folder, stage)
    return None if found is None else found[0]


class ValidationBest:
    """An evaluator's best key metric and its epoch, and the best-epoch saver's record of it, as one checkpointable
    object (``state_dict`` / ``load_state_dict``) that a stage checkpoint carries across a restart.

    Args:
        evaluator: the stage's validation evaluator (its ``state.best_metric`` / ``best_metric_epoch``).
        best_saver: the :class:`~monai.handlers.CheckpointSaver` that keeps the best epoch's weights
            (``save_key_metric``); told the restored best, it only replaces that file with a better epoch.
    """

    def __init__(self, evaluator: SupervisedEvaluator, best_saver: CheckpointSaver | None = None) -> None:
        self.evaluator = evaluator
        self.best_saver = best_saver

    def state_dict(self) -> dict[str, float | int]:
        return {
            "best_metric": float(self.evaluator.state.best_metric),
            "best_metric_epoch": int(self.evaluator.state.best_metric_epoch),
        }

    def load_state_dict(self, state: dict) -> None:
        self.evaluator.state.best_metric = float(state["best_metric"])
        self.evaluator.state.best_metric_epoch = int(state["best_metric_epoch"])
        if self.best_saver is not None and int(state["best_metric_epoch"]) > 0:
            # the saver writes one fixed file name, so the record's file name is only a placeholder
            self.best_saver.load_state_dict({"_saved": [(float(state["best_metric"]), "restored")]})


def attach_stage_checkpoints(
    trainer: SupervisedTrainer,
    ckpt_dir: str | Path,
    stage: str,
    resume: bool = True,
    train_encoder: bool = False,
    evaluator: SupervisedEvaluator | None = None,
    best_saver: CheckpointSaver | None = None,
) -> SupervisedTrainer:
    """Save the stage's modules, optimiser and progress every epoch; resume from the newest readable checkpoint.

    In a multi-process run only rank 0 writes (the ranks hold the same weights); every rank resumes.

    Args:
        trainer: the stage's trainer.
        ckpt_dir: the run folder.
        stage: ``align`` or ``segment`` (names the files).
        resume: continue from this stage's newest readable checkpoint when there is one; False removes the
            stage's old checkpoints and starts from epoch 0.
        train_encoder: the image encoder is trained (and so checkpointed) too.
        evaluator: the stage's validation evaluator, when it has one: its best metric so far is checkpointed.
        best_saver: the evaluator's best-epoch :class:`~monai.handlers.CheckpointSaver`, told the restored best.

    Returns:
        the trainer.
    """
    folder = Path(ckpt_dir)
    folder.mkdir(parents=True, exist_ok=True)
    modules = stage_modules(trainer.network, stage, train_encoder)  # not the frozen towers: small files
    save_dict = {"model": modules, "optimizer": trainer.optimizer, "trainer": trainer}
    if getattr(trainer, "lr_scheduler", None) is not None:
        save_dict["lr_scheduler"] = trainer.lr_scheduler
    if evaluator is not None:
        save_dict["validation_best"] = ValidationBest(evaluator, best_saver)
    latest, latest_keys = None, set()
    if resume:
        latest, latest_keys = _latest_readable_keys(folder, stage) or (None, set())
    else:
        old = stage_checkpoints(folder, stage)
        if old:
            logger.warning("resume is off: removing %d old %s checkpoints in %s", len(old), stage, folder)
        for _, path in old:
            path.unlink()
    saver = Checkpoint(
        save_dict,
        DiskSaver(str(folder), require_empty=False, atomic=True),
        filename_prefix=checkpoint_prefix(stage),
        score_function=lambda engine: engine.state.epoch,
        score_name="epoch",
        n_saved=N_SAVED,
    )
    existing = sorted(stage_checkpoints(folder, stage))
    if existing:  # the saver keeps pruning to the last N_SAVED across restarts
        saver.load_state_dict({"_saved": [(epoch, path.name) for epoch, path in existing]})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    if latest is not None:
        logger.info("resuming stage %s from %s", stage, latest)
        load_dict = dict(save_dict)
        if "lr_scheduler" in load_dict and "lr_scheduler" not in latest_keys:
            del load_dict["lr_scheduler"]
            logger.warning("checkpoint %s holds no learning-rate schedule: the %s schedule restarts", latest, stage)
        if "validation_best" in load_dict and "validation_best" not in latest_keys:
            del load_dict["validation_best"]
            logger.warning(
                "checkpoint %s holds no validation best (written by an older radvlsm): the best %s epoch is "
                "chosen among the epochs run from now on, and the best-epoch file may be replaced by a worse one",
                latest,
                stage,
            )
        CheckpointLoader(str(latest), load_dict, map_location="cpu", strict=False).attach(trainer)
        if "lr_scheduler" in load_dict:  # runs after the loader (same event, attached later)
            expected = getattr(trainer.lr_scheduler, "total_steps", None)
            trainer.add_event_handler(Events.STARTED, _check_schedule_length, stage, latest, expected)
    return trainer


def _check_schedule_length(engine: SupervisedTrainer, stage: str, latest: Path, expected: int | None) -> None:
    """Stop before training when a restored schedule was sized for another run (other epochs or batches).

    A one-cycle schedule knows its length; continuing one sized for fewer iterations would fail when it ends,
    partway through the stage, and one sized for more would never finish its decay.
    """
    restored = getattr(engine.lr_scheduler, "total_steps", None)
    if expected is None or restored is None or restored == expected:
        return
    raise RadVLSMInputError(
        f"its learning-rate schedule is {restored} iterations long, but this run asks for {expected} (the stage's "
        f"epochs or its loader changed since it was written). Keep the stage's epochs and batch size to continue "
        f"it, or set resume to false to start stage {stage} over",
        str(latest),
    )
