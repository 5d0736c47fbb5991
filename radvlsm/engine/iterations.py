"""Iteration functions of the training stages and the evaluator, for MONAI's engines.

Each is passed as ``iteration_update`` to :class:`monai.engines.SupervisedTrainer` (or
:class:`monai.engines.Evaluator`): it reads a batch of transformed dictionaries (``image``, ``label``,
``diagnosis``, ``text``), gets the image embeddings from an :class:`EmbeddingCache` (the encoder is
frozen on CPU, so each training image is encoded once, not once per epoch) and returns a dict whose
``loss`` (trainers) or ``pred``/``label`` (evaluator) MONAI handlers read.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.engine.prompt_sampling import correction_clicks, foreground_points, jitter_boxes
from radvlsm.engine.training_step import STAGES, TrainingStep
from radvlsm.models.candidates import boxes_from_masks


def _batch_tensors(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(batch["image"]).to(device, torch.float32)
    labels = (torch.as_tensor(batch["label"]).to(device, torch.float32) > 0.5).float()
    diagnosis = torch.as_tensor(batch["diagnosis"]).to(device).long().reshape(-1)
    return images, labels, diagnosis


def _embeddings(model, images: torch.Tensor, cache: EmbeddingCache | None) -> torch.Tensor:
    """Frozen-encoder embeddings, from the cache when there is one."""
    if cache is None:
        return model.encode_image(images)
    return cache.get_or_compute(images, model.image_encoder)


class StageIteration:
    """One optimisation step of a training stage (``align``, ``segment`` or ``region``).

    Args:
        stage: ``"align"``, ``"segment"`` or ``"region"``.
        loss: :class:`RadVLSMLoss`.
        cache: embedding cache (ignored when ``train_encoder``).
        train_encoder: back-propagate into the image encoder (GPU use; CPU keeps it frozen).
        box_jitter: maximum truth-box jitter as a fraction of the box size (stages ``segment``, ``box``,
            ``region``).
        max_points: stage ``region`` samples 1 to ``max_points`` truth points per batch.
        seed: seeds the prompt-sampling generator.
        step: the module that computes the loss, e.g. a DistributedDataParallel-wrapped
            :class:`TrainingStep` (multi-process training); None: a plain :class:`TrainingStep` over
            ``engine.network`` (the same computation).
    """

    def __init__(
        self,
        stage: str,
        loss: RadVLSMLoss,
        cache: EmbeddingCache | None,
        train_encoder: bool,
        *,
        box_jitter: float,
        max_points: int,
        seed: int = 0,
        step: nn.Module | None = None,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown training stage {stage!r}; expected one of {STAGES}")
        self.stage = stage
        self.loss = loss
        self.cache = cache
        self.train_encoder = train_encoder
        self.box_jitter = box_jitter
        self.generator = torch.Generator().manual_seed(seed)
        self.step = step
        self.max_points = max_points

    def __call__(self, engine, batch: dict) -> dict[str, Any]:
        model = engine.network
        model.train()
        images, labels, diagnosis = _batch_tensors(batch, engine.state.device)
        # a tuned encoder runs inside the step (its gradients must pass through DDP too)
        embeddings = None if self.train_encoder else _embeddings(model, images, self.cache)
        engine.optimizer.zero_grad(set_to_none=True)
        texts = boxes = points = None
        if self.stage in ("align", "region"):
            texts = list(batch["text"])
        if self.stage in ("segment", "box", "region"):
            boxes = jitter_boxes(boxes_from_masks(labels), model.image_size, self.box_jitter, self.generator)
        if self.stage in ("segment", "region"):
            n = (
                1
                if self.stage == "segment"
                else int(torch.randint(1, self.max_points + 1, (1,), generator=self.generator))
            )
            points = foreground_points(labels, self.generator, n=n)
        step = TrainingStep(model, self.loss, self.stage) if self.step is None else self.step
        total, terms = step(embeddings, labels, diagnosis, texts, boxes, points, images=images)
        total.backward()
        engine.optimizer.step()
        return {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}


class EvalIteration:
    """Automatic (prompt-free) prediction for validation: fused mask and malignancy probability.

    Args:
        cache: embedding cache shared with training (validation images are encoded once too).
    """

    def __init__(self, cache: EmbeddingCache | None = None) -> None:
        self.cache = cache

    def predict(self, model, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, S, S)`` binary mask and ``(B, 2)`` diagnosis logits of the automatic pipeline."""
        out = model(embeddings=embeddings)
        return (out.mask_prob > 0.5).float(), out.fused.diag_logits

    def extra_outputs(
        self, model, embeddings: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Further outputs for the evaluator's metrics (none here)."""
        return {}

    def __call__(self, engine, batch: dict) -> dict[str, Any]:
        model = engine.network
        model.eval()
        images, labels, diagnosis = _batch_tensors(batch, engine.state.device)
        with torch.no_grad():
            embeddings = _embeddings(model, images, self.cache)
            pred, logits = self.predict(model, embeddings, labels)
            extra = self.extra_outputs(model, embeddings, labels, pred)
        return {
            "pred": pred,
            "label": labels,
            "prob": torch.softmax(logits, -1)[:, 1],
            "diagnosis": diagnosis,
            **extra,
        }


class BoxEvalIteration(EvalIteration):
    """User-box prediction for validation: the truth box on the user-box decoder (stage ``box``'s key metric).

    With ``correction_click``, each box's mask is corrected once more by the box and one click at the centre of
    its largest error (:func:`~radvlsm.engine.prompt_sampling.correction_click`), as a user relabeling does:
    ``pred_click`` is that mask, and ``pred_pair``/``label_pair`` stack both masks so that one Dice weighs the box
    alone and the box with its correction equally. ``prob`` is the box region's malignancy probability, for
    completeness.

    Args:
        cache: embedding cache shared with training.
        correction_click: also decode each box with its correction click.
    """

    def __init__(self, cache: EmbeddingCache | None = None, correction_click: bool = False) -> None:
        super().__init__(cache)
        self.correction_click = correction_click

    def predict(self, model, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The truth box's binary mask and its diagnosis logits."""
        logits, diag_logits, _, _ = model.forward_prompted(embeddings, boxes=boxes_from_masks(labels))
        return (logits > 0).float(), diag_logits

    def extra_outputs(
        self, model, embeddings: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """With ``correction_click``: ``pred_click`` (each truth box and one correction click on ``pred``; ``pred``
        kept where it is already right), ``pred_pair`` and ``label_pair``."""
        if not self.correction_click:
            return {}
        points, point_labels, placed = correction_clicks(pred, labels)
        logits, _, _, _ = model.forward_prompted(
            embeddings, boxes=boxes_from_masks(labels), points=points, point_labels=point_labels
        )
        refined = torch.where(placed[:, None, None, None], (logits > 0).float(), pred)
        return {
            "pred_click": refined,
            "pred_pair": torch.cat([pred, refined]),
            "label_pair": torch.cat([labels, labels]),
        }


class RegionEvalIteration(EvalIteration):
    """Region recognition for validation: the truth box as the region prompt, the region's malignancy probability.

    ``pred`` is the prompt's own region map (binary), for completeness; the metric is the AUC.
    """

    def predict(self, model, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The truth box's region map and the region's diagnosis logits."""
        region_map = model.region_map(boxes=boxes_from_masks(labels))
        return (region_map > 0.5).float(), model.recognize_region(embeddings, region_map).diag_logits
