"""Process-group helpers: which rank this is, whether it is the one that validates, logs and saves.

Everything here also works in a plain single-process run (rank 0 of 1), so callers need no special case.
:func:`evaluate_distributed` and :func:`predict_images_distributed` are the bundle's ``multi_gpu_evaluate.json``
and ``multi_gpu_inference.json`` entries: each rank works on its share and rank 0 merges the outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group (e.g. under ``torchrun``)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's global rank (0 outside a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the group (1 outside a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in a single-process run: the process that validates, logs and saves."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op in a single-process run)."""
    if is_distributed():
        torch.distributed.barrier()


def shard(items: list) -> list:
    """This rank's share of ``items`` (MONAI's ``partition_dataset``: disjoint, no padding; all of it alone)."""
    from monai.data import partition_dataset

    if world_size() == 1:
        return list(items)
    return partition_dataset(list(items), num_partitions=world_size(), shuffle=False, even_divisible=False)[rank()]


def _gather_done(ok: bool) -> list[bool]:
    """Every rank's ``ok`` (so that no rank waits at a barrier for a rank that failed)."""
    if not is_distributed():
        return [ok]
    flags: list = [None] * world_size()
    torch.distributed.all_gather_object(flags, ok)
    return [bool(f) for f in flags]


def _on_every_rank(what: str, work: Callable[[], T]) -> T:
    """Run this rank's ``work``; then every rank learns whether all succeeded (none waits for a failed one).

    Raises:
        RuntimeError: naming the ranks where ``work`` failed (a failed rank re-raises its own error).
    """
    ok = False
    try:
        result = work()
        ok = True
    finally:
        flags = _gather_done(ok)
    if not all(flags):
        raise RuntimeError(f"{what} failed on rank(s) {[r for r, f in enumerate(flags) if not f]}")
    return result


def evaluate_distributed(
    predictor, items: list[dict], output_dir: str | Path, n_overlays: int = 8, prompted: bool = True
):
    """:func:`radvlsm.engine.evaluation.evaluate` over the ranks of a process group (``torchrun``).

    Each rank evaluates its :func:`shard` into ``output_dir/rank<r>/`` (its own ``per_image.csv``,
    ``metrics.json`` and overlays); rank 0 then merges the parts into ``output_dir/metrics.json`` and
    ``per_image.csv``, equal to a single-process run's. Outside a process group it is :func:`evaluate`.

    Returns:
        the merged summary on rank 0 (and in a single process), this rank's part summary elsewhere.

    Raises:
        RuntimeError: another rank failed (its own error is in its log).
    """
    from radvlsm.engine.evaluation import evaluate, merge_evaluations

    if not is_distributed():
        return evaluate(predictor, items, output_dir, n_overlays=n_overlays, prompted=prompted)
    out = Path(output_dir)
    mine = shard(items)
    per_rank_overlays = -(-n_overlays // world_size())
    logger.info("rank %d of %d evaluates %d of %d images", rank(), world_size(), len(mine), len(items))
    summary = _on_every_rank(
        "evaluation",
        lambda: evaluate(predictor, mine, out / f"rank{rank()}", n_overlays=per_rank_overlays, prompted=prompted),
    )
    if is_main_process():
        order = [item.get("id", Path(item["image"]).stem) for item in items]
        summary = merge_evaluations([out / f"rank{r}" for r in range(world_size())], out, order)
    barrier()
    return summary


def predict_images_distributed(predictor, source: str | Path, output_dir: str | Path) -> dict:
    """:func:`radvlsm.engine.inference.predict_images` over the ranks of a process group (``torchrun``).

    Each rank predicts its :func:`shard` of the images into ``output_dir/rank<r>/`` (masks, JSON and its
    ``summary.json``); rank 0 merges the summaries into ``output_dir/summary.json``. Outside a process group
    it is :func:`predict_images`.

    Returns:
        the merged summary on rank 0 (and in a single process), this rank's summary elsewhere.
    """
    from radvlsm.engine.inference import list_images, predict_images

    if not is_distributed():
        return predict_images(predictor, source, output_dir)
    out = Path(output_dir)
    mine_dir = out / f"rank{rank()}"
    mine_dir.mkdir(parents=True, exist_ok=True)
    mine = [str(p.resolve()) for p in shard(list_images(source))]
    datalist = mine_dir / "images.json"
    datalist.write_text(json.dumps([{"image": p} for p in mine], indent=2))
    summary = _on_every_rank(
        "inference",
        lambda: (
            predict_images(predictor, datalist, mine_dir)
            if mine
            else {"n_images": 0, "n_done": 0, "failures": {}, "results": {}}
        ),
    )
    if is_main_process():
        parts = [
            json.loads((out / f"rank{r}" / "summary.json").read_text())
            if (out / f"rank{r}" / "summary.json").is_file()
            else {"n_images": 0, "n_done": 0, "failures": {}, "results": {}}
            for r in range(world_size())
        ]
        summary = {
            "n_images": sum(p["n_images"] for p in parts),
            "n_done": sum(p["n_done"] for p in parts),
            "failures": {k: v for p in parts for k, v in p["failures"].items()},
            "results": {k: v for p in parts for k, v in sorted(p["results"].items())},
            "ranks": {f"rank{r}": p["n_done"] for r, p in enumerate(parts)},
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        logger.info("merged %d ranks' predictions into %s", world_size(), out / "summary.json")
    barrier()
    return summary
