"""Training workflow glue: data loaders, per-stage MONAI trainers and the fusion stage (the bundle declares
its datasets, loaders and evaluators in ``train.json``).

Stages (the method's order):
  1. ``align``: semantic alignment (InfoNCE) and lesion focusing; trains the aligner, focus and CoOp context.
  2. ``prompts``: the learned decoder prompts (decoder frozen); ``segment``: the automatic path's copy of the
     decoder, the reliability and diagnosis heads, with candidates generated on the fly. LiteMedSAM's own
     decoder, which serves user boxes, is never tuned.
  3. ``box``: the user-box copy of the decoder on jittered truth boxes; validated before and after, so that
     LiteMedSAM's own weights are kept unless tuning beats them on validation.
  4. ``region``: the feature-level region prompt path (MedP-CLIP style region recognition) on region-text
     pairs from the truth masks; everything the automatic pipeline uses stays frozen.
  5. ``fusion``: radiomics of the predicted masks (off the autograd path, cached), standardiser fit,
     visual-radiomics fusion head.
The image encoder is frozen unless ``train_encoder`` is set (then its embeddings are not cached).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ignite.engine import Events
from monai.data import CacheDataset, DataLoader, Dataset, DistributedSampler
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import LrScheduleHandler, StatsHandler, ValidationHandler
from torch import nn

from radvlsm.data.transforms import get_transforms
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.distributed import rank, world_size
from radvlsm.engine.iterations import StageIteration
from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.engine.training_step import TrainingStep, wrap_distributed

logger = logging.getLogger(__name__)

STAGE_MODULES = {
    "align": ("aligner", "focus", "prompt_learner"),
    "focus": ("focus",),
    "prompts": ("learned_prompts",),
    "segment": ("auto_decoder", "reliability_head", "diagnosis_head", "mcra"),
    "box": ("box_decoder",),
    "fusion": ("fusion",),
    "region": ("region_prompt", "region_context"),
}


@dataclass(frozen=True)
class StageSettings:
    """Optimisation constants shared by the ``align``, ``segment`` and ``region`` stages (``train.json``).

    Args:
        weight_decay: AdamW weight decay.
        head_lr_mult: learning-rate factor of the newly initialised heads against the pretrained decoder.
        box_jitter: maximum truth-box jitter as a fraction of the box size (stages ``segment``, ``region``).
        max_points: stage ``region`` samples 1 to ``max_points`` truth points per batch.
    """

    weight_decay: float
    head_lr_mult: float
    box_jitter: float
    max_points: int


LR_SCHEDULES = ("constant", "one_cycle")


def loss_of(output: dict) -> float:
    """The scalar loss of a training iteration's output, for MONAI's StatsHandler."""
    return output["loss"]


def stage_modules(model: nn.Module, stage: str, train_encoder: bool = False) -> nn.ModuleDict:
    """The sub-modules a stage trains, as one module (its state dict is what a stage checkpoint holds)."""
    if stage not in STAGE_MODULES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGE_MODULES)}")
    names = list(STAGE_MODULES[stage]) + (["image_encoder"] if train_encoder and stage == "segment" else [])
    return nn.ModuleDict({n: getattr(model, n) for n in names if isinstance(getattr(model, n, None), nn.Module)})


def stage_parameters(model: nn.Module, stage: str, train_encoder: bool = False) -> list[nn.Parameter]:
    """Trainable parameters of a stage; everything else is frozen (``requires_grad`` False).

    Args:
        model: the :class:`RadVLSM`.
        stage: ``align``, ``segment`` or ``fusion``.
        train_encoder: also train the image encoder (``segment`` stage only).
    """
    trained = stage_modules(model, stage, train_encoder)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(trained.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def make_loader(
    items: Sequence[dict],
    mode: str,
    batch_size: int = 4,
    shuffle: bool = False,
    num_workers: int = 0,
    image_size: int = 256,
    seed: int = 0,
    distributed: bool = False,
    even_divisible: bool = True,
    cache: bool = False,
) -> DataLoader:
    """A MONAI DataLoader over datalist items with the ``train``/``eval`` transforms.

    Training on cached embeddings uses ``eval`` transforms (no image augmentation: the embedding of an
    augmented image would have to be recomputed every epoch).

    Args:
        items: datalist dictionaries.
        mode: ``train`` or ``eval`` transforms.
        batch_size: images per batch (per process when ``distributed``).
        shuffle: reshuffle every epoch.
        num_workers: loader worker processes.
        image_size: side of the model frame.
        seed: shuffling seed.
        distributed: give each rank of the process group its own share of the items (MONAI's
            ``DistributedSampler``; the trainer sets its epoch, so every epoch reshuffles).
        even_divisible: with ``distributed``, pad the shares to equal length (training: every rank must run
            the same number of DDP steps); False for evaluation, so that metrics gathered over the ranks
            count every image once (unless there are fewer items than ranks).
        cache: keep the transformed items in memory (MONAI ``CacheDataset``: deterministic transforms run once,
            not once per epoch; about 0.3 MB per 256x256 image). Random transforms still run every time.
    """
    transform = get_transforms(mode, image_size=image_size)
    if cache:
        dataset = CacheDataset(list(items), transform=transform, cache_rate=1.0, progress=True)
    else:
        dataset = Dataset(list(items), transform=transform)
    generator = torch.Generator().manual_seed(seed)
    if distributed:
        if not even_divisible and len(dataset) < world_size():
            logger.warning("%d items for %d ranks: some repeat, so that every rank has one", len(dataset), world_size())
            even_divisible = True
        sampler = DistributedSampler(dataset, even_divisible=even_divisible, shuffle=shuffle, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator)


def build_stage_trainer(
    stage: str,
    model: nn.Module,
    loader: DataLoader,
    epochs: int,
    lr: float,
    loss: RadVLSMLoss,
    cache: EmbeddingCache | None,
    device: torch.device | str,
    settings: StageSettings,
    evaluator: SupervisedEvaluator | None = None,
    handlers: Sequence | None = None,
    train_encoder: bool = False,
    seed: int = 0,
    distributed: bool = False,
    lr_schedule: str = "constant",
) -> SupervisedTrainer:
    """A :class:`SupervisedTrainer` for one training stage (``align``, ``focus``, ``segment``, ...).

    Args:
        stage: a key of :data:`STAGE_MODULES` with a training step (``align``, ``focus``, ``prompts``, ``segment``,
            ``box``, ``region``).
        model: the :class:`RadVLSM` (moved to ``device``).
        loader: training DataLoader.
        epochs: epochs of this stage.
        lr: AdamW learning rate.
        loss: the loss (its weights come from ``train.json``).
        cache: shared embedding cache (None: the encoder runs every step).
        device: training device.
        settings: weight decay, head learning-rate factor, box jitter, region points (``train.json``).
        evaluator: validated after each epoch when given.
        handlers: extra train handlers (checkpointing, logging).
        train_encoder: fine-tune the image encoder too (no embedding caching then).
        seed: prompt sampling seed.
        distributed: data-parallel training in the current process group (``torchrun``): the loss step is
            wrapped in DistributedDataParallel (gradients averaged over ranks; rank 0's weights broadcast
            first), prompts are sampled with ``seed + rank`` and the loss is logged on rank 0 only. Give it a
            loader made with ``distributed=True``; the evaluator runs on every rank over its share of the
            validation images (MONAI's metrics gather over the ranks).
        lr_schedule: ``constant``, or ``one_cycle`` (each group's rate warms up over the first 10% of the
            stage's iterations, then decays to zero on a cosine: torch's ``OneCycleLR``). The schedule is
            checkpointed with the stage, so a resumed stage continues it.
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; expected one of {LR_SCHEDULES}")
    device = torch.device(device)
    model.to(device)
    params = stage_parameters(model, stage, train_encoder)
    if not params:
        raise ValueError(f"stage {stage!r} has nothing to train: the model has none of {STAGE_MODULES[stage]}")
    # the pretrained decoder (and encoder) fine-tune at lr; the freshly initialised heads learn faster
    pretrained = {
        id(p)
        for n in ("mask_decoder", "auto_decoder", "box_decoder", "image_encoder")
        if getattr(model, n, None) is not None
        for p in getattr(model, n).parameters()
        if p.requires_grad
    }
    groups = [
        {"params": [p for p in params if id(p) in pretrained], "lr": lr},
        {
            "params": [p for p in params if id(p) not in pretrained],
            "lr": lr * (settings.head_lr_mult if pretrained else 1.0),
        },
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=settings.weight_decay)
    scheduler = None
    if lr_schedule == "one_cycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max(1, epochs * len(loader)),
            pct_start=0.1,
        )
    step = TrainingStep(model, loss, stage)  # built once, not per iteration
    if distributed:
        step = wrap_distributed(step, device)
    this_rank = rank() if distributed else 0
    main = this_rank == 0
    train_handlers = []
    if main:
        train_handlers.append(StatsHandler(name=f"radvlsm.{stage}", tag_name=f"{stage}_loss", output_transform=loss_of))
    if scheduler is not None:
        train_handlers.append(LrScheduleHandler(scheduler, print_lr=False, epoch_level=False))
    if evaluator is not None:
        train_handlers.append(ValidationHandler(validator=evaluator, interval=1, epoch_level=True))
    train_handlers.extend(handlers or [])
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=epochs,
        train_data_loader=loader,
        network=model,
        optimizer=optimizer,
        loss_function=loss,
        iteration_update=StageIteration(
            stage,
            loss,
            cache,
            train_encoder,
            box_jitter=settings.box_jitter,
            max_points=settings.max_points,
            seed=seed + this_rank,
            step=step,
        ),
        train_handlers=train_handlers,
        decollate=False,
    )
    trainer.lr_scheduler = scheduler  # checkpointed with the stage (radvlsm.engine.checkpoints)
    if distributed:
        trainer.add_event_handler(Events.COMPLETED, _log_rank_done, stage)
    return trainer


def _log_rank_done(engine: SupervisedTrainer, stage: str) -> None:
    """Each rank's one line at the end of a data-parallel stage (the loss log itself is rank 0's)."""
    logger.info(
        "rank %d of %d finished stage %s: %d epochs, %d iterations, last loss %.4f",
        rank(),
        world_size(),
        stage,
        engine.state.epoch,
        engine.state.iteration,
        engine.state.output["loss"] if engine.state.output else float("nan"),
    )


@torch.no_grad()
def collect_fusion_inputs(
    model: nn.Module, loader: DataLoader, cache: EmbeddingCache | None = None, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Run the automatic pipeline and extract radiomics of its predicted masks, once per image.

    Returns:
        ``visual_emb (N, C)``, ``visual_logits (N, 2)``, ``radiomics (N, R)`` and ``diagnosis (N,)``.
    """
    if model.radiomics is None:
        raise ValueError("the model has no radiomics extractor; the fusion stage needs one")
    device = torch.device(device)
    model.to(device).eval()
    parts: dict[str, list[torch.Tensor]] = {"visual_emb": [], "visual_logits": [], "radiomics": [], "diagnosis": []}
    for step, batch in enumerate(loader, 1):
        if step % 25 == 0 or step == len(loader):
            logger.info("fusion stage: radiomics of predicted masks, batch %d/%d", step, len(loader))
        images = torch.as_tensor(batch["image"]).to(device, torch.float32)
        embeddings = (
            cache.get_or_compute(images, model.image_encoder) if cache is not None else model.encode_image(images)
        )
        out = model(embeddings=embeddings)
        parts["visual_emb"].append(out.fused.region_emb.cpu())
        parts["visual_logits"].append(out.fused.diag_logits.cpu())
        parts["radiomics"].append(model.radiomics.extract_batch(images, (out.mask_prob > 0.5).float()).cpu())
        parts["diagnosis"].append(torch.as_tensor(batch["diagnosis"]).long().reshape(-1))
    return {k: torch.cat(v) for k, v in parts.items()}


def fit_fusion(
    model: nn.Module, inputs: dict[str, torch.Tensor], epochs: int, lr: float, weight_decay: float, seed: int = 0
) -> dict[str, float]:
    """Fit the radiomics standardiser and train the visual-radiomics fusion head on collected inputs.

    Args:
        model: the :class:`RadVLSM` with ``fusion`` and ``standardizer``.
        inputs: the output of :func:`collect_fusion_inputs` on the training split.
        epochs: full-batch optimisation steps.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        seed: seeds the head's dropout.

    Returns:
        cross-entropy before and after, and the fusion gate.
    """
    torch.manual_seed(seed)
    device = next(model.fusion.parameters()).device
    x = {k: v.to(device) for k, v in inputs.items()}
    model.standardizer.fit(x["radiomics"])
    params = stage_parameters(model, "fusion")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    std = model.standardizer(x["radiomics"])

    def ce() -> torch.Tensor:
        return nn.functional.cross_entropy(model.fusion(x["visual_emb"], std, x["visual_logits"]), x["diagnosis"])

    model.fusion.train()
    with torch.no_grad():
        before = float(ce())
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        loss = ce()
        loss.backward()
        optimizer.step()
    model.fusion.eval()
    with torch.no_grad():
        after = float(ce())
    logger.info("fusion stage: cross-entropy %.4f -> %.4f", before, after)
    return {"fusion_ce_before": before, "fusion_ce_after": after}
