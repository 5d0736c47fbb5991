"""Per-stage training checkpoints: written atomically every epoch, and the newest readable one resumed.

Each stage (``align``, ``segment``) saves its trained modules, optimiser and trainer state (epoch,
iteration) after every epoch as ``checkpoint_<stage>_checkpoint_epoch=<n>.pt`` in the run folder, through
ignite's :class:`~ignite.handlers.Checkpoint` with an atomic :class:`~ignite.handlers.DiskSaver` (temporary
file, then rename), keeping the last two. A training run killed at any moment (mid-epoch, or while a
checkpoint is written) and started again with the same run folder continues from the newest checkpoint
that loads, with MONAI's :class:`~monai.handlers.CheckpointLoader`: the interrupted epoch is redone, the
finished ones are not.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader

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


def latest_readable(folder: str | Path, stage: str) -> Path | None:
    """The newest checkpoint of ``stage`` that loads; None if none.

    Newer files that do not load (a run killed while a non-atomic writer wrote them, a full disk) are
    logged and renamed to ``<name>.corrupt``, so that they are neither resumed nor counted again.
    """
    for epoch, path in stage_checkpoints(folder, stage):
        try:
            state = read_torch_file(path)
            usable = isinstance(state, dict) and {"model", "optimizer", "trainer"} <= set(state)
            problem = "lacks model/optimizer/trainer state"
        except RadVLSMInputError as exc:
            usable, problem = False, f"cannot be read ({exc})"
        if usable:
            return path
        aside = path.with_name(path.name + ".corrupt")
        logger.error("checkpoint %s (epoch %d) %s: moved aside to %s", path, epoch, problem, aside.name)
        path.replace(aside)
    return None


def attach_stage_checkpoints(
    trainer: SupervisedTrainer, ckpt_dir: str | Path, stage: str, resume: bool = True, train_encoder: bool = False
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

    Returns:
        the trainer.
    """
    folder = Path(ckpt_dir)
    folder.mkdir(parents=True, exist_ok=True)
    modules = stage_modules(trainer.network, stage, train_encoder)  # not the frozen towers: small files
    save_dict = {"model": modules, "optimizer": trainer.optimizer, "trainer": trainer}
    latest = None
    if resume:
        latest = latest_readable(folder, stage)
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
        CheckpointLoader(str(latest), save_dict, map_location="cpu", strict=False).attach(trainer)
    return trainer
