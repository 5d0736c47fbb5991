"""Functions the bundle's JSON configs call: data preparation, checkpointing, the fusion stage, saving.

The JSON chooses and sizes everything; these functions only do the work, logging what they do.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from monai.data import DataLoader

from radvlsm.atomic_files import atomic_write, atomic_write_text
from radvlsm.data.datalist import load_dataset
from radvlsm.data.phantom import ensure_phantom_dataset
from radvlsm.data.records import DatasetReport
from radvlsm.data.splits import all_split, read_split, split_by_case, write_split
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.checkpoints import attach_stage_checkpoints
from radvlsm.engine.distributed import barrier, is_main_process
from radvlsm.engine.workflow import collect_fusion_inputs, fit_fusion, stage_modules
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import load_trained_weights, read_torch_file, trained_state_dict

logger = logging.getLogger(__name__)


def prepare_dataset(dataset_dir: str, phantom_images: int = 60, seed: int = 0, validate: bool = True) -> DatasetReport:
    """Load a dataset folder (BUS-BRA or BUSI layout, or a datalist JSON); make the phantom when asked for it.

    A ``dataset_dir`` whose last part is ``phantom`` and that holds no dataset yet is filled with the
    built-in synthetic phantom, so the default run works offline. In a multi-process run only rank 0
    generates it; the other ranks wait for it at a barrier.

    Args:
        dataset_dir: the folder or datalist JSON.
        phantom_images: phantom size when it is generated.
        seed: phantom seed.
        validate: check every image and mask (skipped items are counted and reported).
    """
    path = Path(dataset_dir).expanduser()
    if path.name == "phantom":
        if is_main_process() and not (path / "bus_data.csv").is_file():
            logger.info("no dataset at %s: generating the built-in phantom (%d images)", path, phantom_images)
            ensure_phantom_dataset(path, n_images=phantom_images, seed=seed)
        barrier()  # every rank passes it, whether or not rank 0 had to generate anything
    if not path.exists():
        raise RadVLSMInputError("dataset folder not found (pass --dataset_dir DIR)", str(path))
    report = load_dataset(path, validate=validate)
    logger.info("dataset %s: %s", path, report.summary())
    if not report.items:
        raise RadVLSMInputError("no usable images in the dataset", str(path))
    return report


def prepare_splits(
    report: DatasetReport,
    split: str = "train",
    split_file: str | None = None,
    output_dir: str | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> dict[str, list[dict]]:
    """Training/validation/test items, patient-grouped; or every image for external validation.

    Args:
        report: the loaded dataset.
        split: ``all`` (every image, no split applied: keys ``all`` and ``test``) or any of ``train``,
            ``training``, ``validation``, ``test`` (the patient split: ``split_file`` when it exists, else
            split by patient and write the split to ``output_dir/split.json``).
        split_file: a split JSON of image IDs (the bundle ships the BUS-BRA development split).
        output_dir: where a newly made split is written (by rank 0 only in a multi-process run).
        seed: split seed.
        fractions: training, validation, test fractions of patients.
    """
    if split == "all":
        items = all_split(report)["all"]
        return {"all": items, "test": items}
    if split not in ("train", "training", "validation", "test"):
        raise RadVLSMInputError(f"unknown split {split!r}; expected all, training, validation or test", "split")
    if split_file and Path(split_file).is_file():
        splits = read_split(split_file, report)
        logger.info("split from %s", split_file)
    else:
        splits = split_by_case(report.items, fractions=tuple(fractions), seed=seed)
        if output_dir and is_main_process():
            target = Path(output_dir) / "split.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_split(target, splits, dataset_name=Path(report.root).name, seed=seed)
            logger.info("patient-grouped split written to %s", target)
    logger.info("split sizes: %s", {k: len(v) for k, v in splits.items()})
    return splits


def attach_checkpointing(
    trainer,
    ckpt_dir: str,
    stage: str,
    resume: bool = True,
    train_encoder: bool = False,
    evaluator=None,
    best_saver=None,
):
    """Checkpoint a stage every epoch (atomically) and resume from its newest readable checkpoint; with
    ``evaluator`` (and its ``best_saver``), the validation best so far travels in the checkpoint too.

    See :func:`radvlsm.engine.checkpoints.attach_stage_checkpoints` (the bundle's ``resume`` option).

    Returns:
        the trainer (for chaining in JSON).
    """
    return attach_stage_checkpoints(
        trainer,
        ckpt_dir,
        stage,
        resume=resume,
        train_encoder=train_encoder,
        evaluator=evaluator,
        best_saver=best_saver,
    )


def run_fusion_stage(
    model,
    loader,
    cache: EmbeddingCache | None,
    device,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int = 0,
    val_loader=None,
) -> dict[str, float]:
    """Stage 4: radiomics of predicted training masks, standardiser fit, fusion head training, calibration.

    Args:
        model: the network.
        loader: the training images, unshuffled (the bundle's ``fusion_loader``).
        cache: embedding cache; device: where it runs.
        epochs, lr, weight_decay: the fusion head's full-batch AdamW steps (``train.json``).
        seed: seeds the head's dropout.
        val_loader: validation images; when given, the fused probability's temperature is fitted on them.
    """
    if model.fusion is None:
        logger.info("radiomics fusion is off; skipping the fusion stage")
        return {}
    inputs = collect_fusion_inputs(model, loader, cache, device)
    report = fit_fusion(model, inputs, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)
    if val_loader is not None:  # temperature scaling on held-out images: a calibrated probability
        val = collect_fusion_inputs(model, val_loader, cache, device)
        with torch.no_grad():
            fused = model.fusion(val["visual_emb"], model.standardizer(val["radiomics"]), val["visual_logits"])
        report["temperature"] = model.fusion.calibrate(fused, val["diagnosis"])
        logger.info("fusion stage: temperature %.3f fitted on %d validation images", report["temperature"], len(fused))
    return report


def run_box_stage(model, trainer, evaluator, best_path: str) -> dict[str, float | str]:
    """Stage ``box``: tune the user-box decoder copy, with LiteMedSAM's own weights as a contender.

    The copy starts from the untouched decoder's weights and is validated once before training, so that
    LiteMedSAM's validation figure (the evaluator's key metric) is the one to beat: the best validation epoch is
    kept only when it is higher; otherwise the copy keeps LiteMedSAM's weights (and :func:`save_model` ships none
    of it). The evaluator's other metrics are reported for both contenders too (the kept epoch is validated once
    more to read them).

    Args:
        model: the network, with ``box_decoder``.
        trainer: the stage's trainer (validated by ``evaluator`` every epoch).
        evaluator: the box evaluator (key metric: the Dice of the truth box's mask, or of it and its corrected
            mask together); its ``best_saver`` writes ``best_path``.
        best_path: the best validation epoch's stage checkpoint.

    Returns:
        ``box_val_dice_litemedsam``, ``box_val_dice`` (the key metric, the kept weights'), ``box_val_metric``
        (its name), ``box_decoder`` (``tuned`` or ``litemedsam``) and each other metric ``M`` as ``M`` and
        ``M_litemedsam``, for the metrics saved beside the weights.
    """
    if model.box_decoder is None:
        raise ValueError("stage 'box' needs a model built with tuned_box_decoder")
    model.box_decoder.load_state_dict(model.mask_decoder.state_dict())  # always from LiteMedSAM's own weights
    evaluator.run()
    key = evaluator.state.key_metric_name
    litemedsam = {k: float(v) for k, v in evaluator.state.metrics.items()}
    baseline = litemedsam[key]
    trainer.run()
    best = float(evaluator.state.best_metric)
    kept = litemedsam
    if best > baseline:
        load_best(stage_modules(model, "box"), best_path)
        chosen = "tuned"
        if len(litemedsam) > 1:  # the best epoch's other metrics
            evaluator.run()
            kept = {k: float(v) for k, v in evaluator.state.metrics.items()}
    else:
        model.box_decoder.load_state_dict(model.mask_decoder.state_dict())
        best, chosen = baseline, "litemedsam"
    logger.info(
        "stage box: validation %s %.4f with LiteMedSAM's weights, %.4f kept (%s decoder for user boxes)",
        key,
        baseline,
        best,
        chosen,
    )
    report: dict[str, float | str] = {
        "box_val_dice_litemedsam": baseline,
        "box_val_dice": best,
        "box_val_metric": key,
        "box_decoder": chosen,
    }
    for name in litemedsam:
        if name != key and name in kept:
            report[f"{name}_litemedsam"], report[name] = litemedsam[name], kept[name]
    return report


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """float16 copy of a floating-point tensor when all its values fit float16; the tensor itself otherwise."""
    if not tensor.is_floating_point():
        return tensor
    half = tensor.half()
    return half if torch.isfinite(half).all() or not torch.isfinite(tensor).all() else tensor


def save_model(model, path: str, metrics: dict | None = None) -> str:
    """Write the shippable weights atomically (temporary file, fsync, rename), with a JSON of the metrics beside it.

    A server reading ``model.pt`` meanwhile sees the old file or the new one, never a partial one.
    Floating-point weights are stored in float16 (half the size; loading casts them back to the model's dtype),
    except tensors with values beyond float16's range (e.g. radiomics means), which stay float32.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: _compact(v) for k, v in trained_state_dict(model).items()}
    with atomic_write(target) as f:
        torch.save(state, f)
    if metrics is not None:
        atomic_write_text(target.with_suffix(".json"), json.dumps(metrics, indent=2, default=float))
    logger.info("model weights saved to %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return str(target)


def load_best(model, path: str):
    """Load the best validation checkpoint of the segment stage (kept by MONAI's CheckpointSaver) when present.

    An unreadable file (e.g. a run killed while writing it) is logged and the last weights are kept.
    """
    target = Path(path)
    if not target.is_file():
        logger.warning("no best checkpoint at %s; keeping the last weights", target)
        return model
    try:
        state = read_torch_file(target)
    except RadVLSMInputError as exc:
        logger.error("best checkpoint %s cannot be read (%s); keeping the last weights", target, exc)
        return model
    model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    logger.info("loaded the best validation weights from %s", target)
    return model


def load_weights(model, path: str):
    """Load shipped weights (``model.pt``) to continue from them, e.g. the ``region_training`` entry point.

    Raises:
        RadVLSMInputError: the file is missing, unreadable or does not fit the network.
    """
    load_trained_weights(model, path)
    logger.info("continuing from the weights in %s", path)
    return model


def read_metrics(weights_path: str) -> dict:
    """The metrics JSON saved beside a weights file by :func:`save_model` (empty when there is none)."""
    target = Path(weights_path).with_suffix(".json")
    if not target.is_file():
        return {}
    try:
        return dict(json.loads(target.read_text()))
    except (ValueError, TypeError) as exc:
        logger.warning("ignoring unreadable metrics file %s (%s)", target, exc)
        return {}


def _drawn(total: int, n: int, seed: int) -> list[int] | None:
    """Sorted indices of ``n`` of ``total`` items drawn without replacement (seeded); None when ``n`` is 0 or at
    least ``total`` (everything is kept)."""
    if n <= 0 or n >= total:
        return None
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:n])


def subset(items: list[dict], n: int, seed: int = 0) -> list[dict]:
    """A deterministic random subset of ``n`` items (all of them when ``n`` is 0 or at least their number)."""
    chosen = _drawn(len(items), n, seed)
    if chosen is None:
        return list(items)
    logger.info("using %d of %d training images (train_subset)", n, len(items))
    return [items[i] for i in chosen]


def with_views(items: list[dict], n_views: int) -> list[dict]:
    """Each item ``n_views`` times, with ``view`` 0 (the image itself) to ``n_views - 1`` (augmented views).

    With :class:`radvlsm.data.transforms.UltrasoundViewd` in the cached preprocessing, each view is one fixed
    augmentation whose embedding is computed once: augmentation on a frozen encoder's cached embeddings.
    """
    if n_views < 1:
        raise RadVLSMInputError(f"must be at least 1, got {n_views}", "n_views")
    return [{**item, "view": v} for v in range(n_views) for item in items]


def encode_datasets(datasets, cache, encoder, batch_size: int = 8) -> dict[str, int]:
    """Fill ``cache`` with the embeddings of every image of ``datasets`` (one encoder pass each), showing progress.

    Training then reads every embedding from the cache; a restarted run skips what is already on disk.

    Returns:
        how many embeddings were found and computed.
    """
    hits, misses = cache.hits, cache.misses
    total = sum(len(ds) for ds in datasets)
    done = 0
    for ds in datasets:
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
        for batch in loader:
            cache.get_or_compute(torch.as_tensor(batch["image"]).float(), encoder)
            done += len(batch["image"])
            if done % (25 * batch_size) < batch_size or done == total:
                logger.info("embeddings: %d/%d images (%d computed)", done, total, cache.misses - misses)
    counts = {"found": cache.hits - hits, "computed": cache.misses - misses}
    logger.info("embeddings ready: %s", counts)
    return counts


def random_subset(dataset, n: int, seed: int = 0):
    """``n`` items of ``dataset`` drawn without replacement (all of them when ``n`` is 0 or too large).

    Stage ``segment`` tunes the decoder copy, the costliest step on a CPU; ``train.json`` bounds it this way.
    """
    chosen = _drawn(len(dataset), n, seed)
    if chosen is None:
        return dataset
    logger.info("stage segment: %d of %d training views", n, len(dataset))
    return torch.utils.data.Subset(dataset, chosen)
