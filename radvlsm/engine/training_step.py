"""One stage's loss computation as a module, so that DistributedDataParallel can wrap it.

The stage losses (:meth:`RadVLSMLoss.align`, :meth:`RadVLSMLoss.segment`) call the model's sub-modules
directly (``model.aligner``, ``model.mask_decoder``, ...). DDP only synchronises gradients of what runs
inside its own ``forward``, so wrapping the :class:`RadVLSM` itself would leave every gradient local.
:class:`TrainingStep` puts the whole loss computation (and, when the encoder is tuned, the encoder pass)
inside one ``forward``; :func:`wrap_distributed` wraps it in DDP after the stage has frozen what it does
not train (DDP registers only parameters with ``requires_grad`` at construction).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from radvlsm.engine.losses import RadVLSMLoss

STAGES = ("align", "focus", "prompts", "segment", "box", "region")


class TrainingStep(nn.Module):
    """The total loss of one ``align``, ``segment`` or ``region`` training step, in a single ``forward``.

    Args:
        model: the :class:`radvlsm.models.radvlsm.RadVLSM` (registered as ``model``; its parameters are the
            step's parameters).
        loss: the :class:`RadVLSMLoss`.
        stage: ``"align"``, ``"segment"`` or ``"region"``.
    """

    def __init__(self, model: nn.Module, loss: RadVLSMLoss, stage: str) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"unknown training stage {stage!r}; expected one of {STAGES}")
        self.model = model
        self.loss = loss
        self.stage = stage

    def forward(
        self,
        embeddings: torch.Tensor | None,
        labels: torch.Tensor,
        diagnosis: torch.Tensor,
        texts: list[str] | None = None,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the stage loss.

        Args:
            embeddings: ``(B, C, h, w)`` image embeddings, or None to encode ``images`` here (encoder tuning).
            labels: ``(B, 1, S, S)`` binary truth masks.
            diagnosis: ``(B,)`` class indices (0 benign, 1 malignant).
            texts: B clinical descriptions (stages ``align`` and ``region``).
            boxes: ``(B, 4)`` jittered truth boxes (stages ``segment``, ``box`` and ``region``).
            points: ``(B, P, 2)`` truth points (stages ``segment`` and ``region``).
            images: ``(B, 1, S, S)`` model-frame images, used when ``embeddings`` is None.

        Returns:
            (total loss, dict of named scalar terms).
        """
        if embeddings is None:
            if images is None:
                raise ValueError("give embeddings or images")
            embeddings = self.model.encode_image(images)
        if self.stage == "align":
            if texts is None:
                raise ValueError("stage 'align' needs the clinical texts")
            return self.loss.align(self.model, embeddings, labels, list(texts), diagnosis)
        if self.stage == "focus":
            return self.loss.focus(self.model, embeddings, labels)
        if self.stage == "prompts":
            return self.loss.prompts(self.model, embeddings, labels)
        if self.stage == "box":
            if boxes is None:
                raise ValueError("stage 'box' needs the truth boxes")
            return self.loss.box(self.model, embeddings, labels, boxes)
        if boxes is None or points is None:
            raise ValueError(f"stage {self.stage!r} needs the truth boxes and points")
        if self.stage == "region":
            if texts is None:
                raise ValueError("stage 'region' needs the clinical texts")
            return self.loss.region(self.model, embeddings, labels, diagnosis, list(texts), boxes, points)
        total, terms, _ = self.loss.segment(self.model, embeddings, labels, diagnosis, boxes, points)
        return total, terms


def wrap_distributed(step: TrainingStep, device: torch.device | str) -> nn.Module:
    """Wrap a :class:`TrainingStep` in DistributedDataParallel (call after the stage froze its other weights).

    Rank 0's weights and buffers are broadcast to every rank here, so all ranks start the stage identical;
    afterwards each backward averages the trained parameters' gradients over the ranks.

    Args:
        step: the step to wrap.
        device: this rank's device (``cuda:<local rank>`` or ``cpu``).

    Returns:
        the DDP module (call it like the step).
    """
    device = torch.device(device)
    ddp = nn.parallel.DistributedDataParallel
    # buffers are not trained in these stages: broadcast once here, not before every forward (torch 2.13 spells
    # this forward_sync_buffers=False and deprecates broadcast_buffers, the spelling of older versions)
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:
        buffers = {"forward_sync_buffers": False}
    else:
        buffers = {"broadcast_buffers": False}
    return ddp(
        step,
        device_ids=[device] if device.type == "cuda" else None,
        # a stage does not use every trained parameter each step (e.g. SAM's unused mask tokens)
        find_unused_parameters=True,
        **buffers,
    )
