"""Training losses of the two Rad-VLSM stages (and the fusion stage), built from MONAI and the heads' losses.

Stage ``align``: InfoNCE between truth-region embeddings and their clinical text, zero-shot class
alignment, and supervised lesion focusing. Stage ``segment``: Dice + focal (MONAI) on candidate masks,
on a jittered truth-box prompt (keeps interactive box/point use sharp) and on the fused mask;
cross-entropy on candidate and fused diagnosis; IoU regression for the reliability head and SAM's IoU head.
Stage ``box``: Dice + BCE of the user-box decoder copy on jittered truth boxes.
Stage ``region``: region-text pairs (truth mask, jittered truth box, sampled points, each with the
lesion's clinical text) train the feature-level region prompt path; a global-context term keeps the
prompted image's global embedding at the unprompted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss
from torch import nn

from radvlsm.engine.prompt_sampling import correction_clicks
from radvlsm.models.align import contrastive_loss
from radvlsm.models.decode import decode_learned, decode_prompts
from radvlsm.models.focus import focus_loss
from radvlsm.models.reliability import mask_iou, reliability_loss


@dataclass
class LossWeights:
    """Weights of the loss terms; the bundle's ``train.json`` sets them.

    Args:
        contrastive: InfoNCE region-text alignment (stage align).
        class_alignment: zero-shot class prompt cross-entropy (stage align).
        focus: focusing map supervision (stages align and focus).
        candidate_mask: Dice + focal on the candidates' box masks.
        prompt_mask: Dice + focal on masks from jittered truth boxes and truth points.
        fused_mask: Dice + BCE on the MCRA mask.
        diagnosis: cross-entropy on candidate and fused diagnosis logits.
        reliability: IoU regression of the reliability head.
        iou_head: SAM IoU-prediction regression.
        region_diagnosis: cross-entropy of the diagnosis head on prompted regions (stage region).
        region_contrastive: InfoNCE between prompted-region embeddings and their clinical text (stage region).
        region_class_alignment: zero-shot class prompt cross-entropy of prompted regions (stage region).
        global_context: ``1 - cos`` between the prompted and unprompted global image embeddings (stage region).
        learned_prompt: Dice + focal of the best learned prompt's mask (stage prompts).
        learned_spread: weight of the mean over all learned prompts against the best one (stage prompts).
        box_mask: Dice + BCE of the user-box decoder's mask from a jittered truth box (stage box).
        box_click: Dice + BCE of the same decoder's mask from that box and one correction click at the centre of
            its first mask's largest error (stage box): a user who draws a box and then clicks where it is wrong.
    """

    contrastive: float = 1.0
    class_alignment: float = 0.5
    focus: float = 1.0
    candidate_mask: float = 1.0
    prompt_mask: float = 1.0
    fused_mask: float = 1.0
    diagnosis: float = 0.5
    reliability: float = 0.5
    iou_head: float = 0.1
    region_diagnosis: float = 1.0
    region_contrastive: float = 1.0
    region_class_alignment: float = 0.5
    global_context: float = 1.0
    learned_prompt: float = 1.0
    learned_spread: float = 0.25
    box_mask: float = 1.0
    box_click: float = 0.0


def masked_region_embedding(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, E, h, w)`` patch embeddings under ``(B, 1, H, W)`` masks, L2-normalised -> ``(B, E)``.

    An empty mask falls back to the whole image.
    """
    weights = F.interpolate(mask.float(), size=patches.shape[-2:], mode="area")
    empty = weights.flatten(1).sum(1) < 1e-6
    weights = torch.where(empty[:, None, None, None], torch.ones_like(weights), weights)
    pooled = (patches * weights).flatten(2).sum(-1) / weights.flatten(2).sum(-1).clamp(min=1e-6)
    return F.normalize(pooled, dim=-1)


class RadVLSMLoss(nn.Module):
    """Computes the per-stage losses from model outputs and a batch.

    Args:
        weights: :class:`LossWeights`.
    """

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.dice_focal = DiceFocalLoss(sigmoid=True, reduction="mean")
        self.dice_prob = DiceLoss(sigmoid=False, reduction="mean")
        self.dice_focal_each = DiceFocalLoss(sigmoid=True, reduction="none")
        self.dice_bce = DiceCELoss(sigmoid=True, reduction="mean")

    def align(self, model, embeddings: torch.Tensor, label: torch.Tensor, texts: list[str], diagnosis: torch.Tensor):
        """Stage ``align`` losses.

        Args:
            model: :class:`radvlsm.models.radvlsm.RadVLSM`.
            embeddings: ``(B, C, h, w)``; label: ``(B, 1, S, S)``; texts: B clinical descriptions;
            diagnosis: ``(B,)`` class indices.

        Returns:
            (total loss, dict of named scalar terms).
        """
        w = self.weights
        patches = model.aligner.project_patches(embeddings)
        region = masked_region_embedding(patches, label)
        text = model.text_embedding(list(texts))
        # InfoNCE needs negatives: a last batch of one image (N % batch_size == 1) trains the other terms only
        terms = {
            "contrastive": contrastive_loss(region, text, model.aligner.logit_scale)
            if region.shape[0] > 1
            else region.sum() * 0.0
        }
        classes = model.text_embedding(model.class_prompts)
        scale = model.aligner.logit_scale.exp().clamp(max=100)
        terms["class_alignment"] = F.cross_entropy(scale * region @ classes.t(), diagnosis)
        terms["focus"] = focus_loss(model.focus(embeddings, patches, model.lesion_embedding()), label)
        total = (
            w.contrastive * terms["contrastive"]
            + w.class_alignment * terms["class_alignment"]
            + w.focus * terms["focus"]
        )
        return total, terms

    def focus(self, model, embeddings: torch.Tensor, label: torch.Tensor):
        """Stage ``focus``: the focusing head alone, on the aligned (now frozen) patches and lesion prompt.

        Args:
            model: :class:`radvlsm.models.radvlsm.RadVLSM`.
            embeddings: ``(B, C, h, w)``; label: ``(B, 1, S, S)``.

        Returns:
            (total loss, dict of named scalar terms).
        """
        term = focus_loss(model.focus_logits(embeddings), label)
        return self.weights.focus * term, {"focus": term}

    def prompts(self, model, embeddings: torch.Tensor, label: torch.Tensor):
        """Stage ``prompts``: the learned decoder prompts, best-of-L Dice + focal (multiple-choice learning).

        Each image's loss is its best prompt's plus ``learned_spread`` times the mean over all prompts, so that
        every prompt stays useful while they specialise.

        Args:
            model: :class:`radvlsm.models.radvlsm.RadVLSM` with ``learned_prompts``.
            embeddings: ``(B, C, h, w)``; label: ``(B, 1, S, S)``.

        Returns:
            (total loss, dict of named scalar terms).
        """
        out = decode_learned(model.candidate_decoder, embeddings, model.learned_prompts())
        b, n = out.mask_logits.shape[:2]
        per = self.dice_focal_each(out.mask_logits.flatten(0, 1), label.repeat_interleave(n, 0))
        per = per.flatten(1).mean(1).view(b, n)
        best = per.min(dim=1).values.mean()
        terms = {"learned_best": best, "learned_mean": per.mean()}
        return self.weights.learned_prompt * (best + self.weights.learned_spread * per.mean()), terms

    def box(self, model, embeddings: torch.Tensor, label: torch.Tensor, boxes: torch.Tensor):
        """Stage ``box``: Dice + BCE of the user-box decoder's mask from jittered truth boxes, and (``box_click``)
        from each box with one correction click placed on that first mask's largest error (SAM's interactive
        training: the click is simulated from the detached prediction, so the decoder learns to take it).

        Args:
            model: :class:`radvlsm.models.radvlsm.RadVLSM` with ``box_decoder``.
            embeddings: ``(B, C, h, w)``; label: ``(B, 1, S, S)``; boxes: ``(B, 4)`` (model frame).

        Returns:
            (total loss, dict of named scalar terms).
        """
        if model.box_decoder is None:
            raise ValueError("stage 'box' needs a model built with tuned_box_decoder")
        out = decode_prompts(model.box_decoder, embeddings, boxes)
        term = self.dice_bce(out.mask_logits[:, 0], label)
        total, terms = self.weights.box_mask * term, {"box_mask": term}
        if self.weights.box_click:
            points, point_labels, placed = correction_clicks(out.mask_logits[:, 0].detach() > 0, label)
            click = embeddings.new_zeros(())
            if bool(placed.any()):
                refined = decode_prompts(
                    model.box_decoder, embeddings[placed], boxes[placed], points[placed], point_labels[placed]
                )
                click = self.dice_bce(refined.mask_logits[:, 0], label[placed])
            total = total + self.weights.box_click * click
            terms["box_click"] = click
        return total, terms

    def segment(self, model, embeddings: torch.Tensor, label: torch.Tensor, diagnosis: torch.Tensor, boxes, points):
        """Stage ``segment`` losses.

        Args:
            model: :class:`radvlsm.models.radvlsm.RadVLSM`.
            embeddings: ``(B, C, h, w)``; label: ``(B, 1, S, S)``; diagnosis: ``(B,)``.
            boxes: ``(B, 4)`` jittered truth boxes; points: ``(B, 1, 2)`` truth points (model frame).

        Returns:
            (total loss, dict of named scalar terms, the :class:`RadVLSMOutput`).
        """
        w = self.weights
        out = model(embeddings=embeddings)
        valid = out.candidates.valid
        k = valid.shape[1]
        truth_k = label[:, None].expand(-1, k, -1, -1, -1)
        flat = out.mask_logits.flatten(0, 1)[valid.flatten()]
        zero = embeddings.new_zeros(())
        terms = {
            "candidate_mask": self.dice_focal(flat, truth_k.flatten(0, 1)[valid.flatten()])
            if w.candidate_mask
            else zero
        }
        _, box_diag, _, _ = model.forward_prompted(embeddings, boxes=boxes)  # diagnosis from a box too
        terms["prompt_mask"] = zero
        if w.prompt_mask:  # clicks (completed with a box from the map) on the tuned decoder copy
            pt_logits, _, _, _ = model.forward_prompted(
                embeddings,
                points=points,
                point_labels=torch.ones(points.shape[:2], dtype=torch.long, device=points.device),
            )
            terms["prompt_mask"] = self.dice_focal(pt_logits, label)
        fused = out.fused.mask_prob.clamp(1e-6, 1 - 1e-6)
        terms["fused_mask"] = self.dice_prob(fused, label) + F.binary_cross_entropy(fused, label)
        cand_ce = F.cross_entropy(
            out.candidate_diag_logits.flatten(0, 1), diagnosis.repeat_interleave(k), reduction="none"
        )
        terms["diagnosis"] = (
            (cand_ce * valid.flatten().float()).sum() / valid.sum().clamp(min=1)
            + F.cross_entropy(out.fused.diag_logits, diagnosis)
            + F.cross_entropy(box_diag, diagnosis)  # diagnosis from a user's box prompt too
        )
        with torch.no_grad():
            target_iou = mask_iou(torch.sigmoid(out.mask_logits), label)
        terms["reliability"] = reliability_loss(out.reliability_logits, target_iou, valid)
        terms["iou_head"] = zero
        if w.iou_head:
            iou_err = (out.iou_pred - target_iou) ** 2
            terms["iou_head"] = (iou_err * valid.float()).sum() / valid.sum().clamp(min=1)
        total = (
            w.candidate_mask * terms["candidate_mask"]
            + w.prompt_mask * terms["prompt_mask"]
            + w.fused_mask * terms["fused_mask"]
            + w.diagnosis * terms["diagnosis"]
            + w.reliability * terms["reliability"]
            + w.iou_head * terms["iou_head"]
        )
        return total, terms, out

    def region(
        self,
        model,
        embeddings: torch.Tensor,
        label: torch.Tensor,
        diagnosis: torch.Tensor,
        texts: list[str],
        boxes: torch.Tensor,
        points: torch.Tensor,
    ):
        """Stage ``region`` losses, averaged over three prompt forms of the truth region.

        Args:
            model: :class:`radvlsm.models.radvlsm.RadVLSM` with a region prompt path.
            embeddings: ``(B, C, h, w)``; label: ``(B, 1, S, S)`` truth masks; diagnosis: ``(B,)``;
            texts: B clinical descriptions.
            boxes: ``(B, 4)`` jittered truth boxes; points: ``(B, P, 2)`` truth points (model frame).

        Returns:
            (total loss, dict of named scalar terms).
        """
        w = self.weights
        text = model.text_embedding(list(texts))
        classes = model.text_embedding(model.class_prompts)
        scale = model.aligner.scale()
        with torch.no_grad():
            unprompted = model.aligner.project_global(embeddings)
        maps = (model.region_map(masks=label), model.region_map(boxes=boxes), model.region_map(points=points))
        names = ("region_diagnosis", "region_contrastive", "region_class_alignment", "global_context")
        terms = {k: embeddings.new_zeros(()) for k in names}
        for region_map in maps:
            out = model.recognize_region(embeddings, region_map)
            region = model.aligner.project_region(out.region_emb)
            terms["region_diagnosis"] = terms["region_diagnosis"] + F.cross_entropy(out.diag_logits, diagnosis)
            if region.shape[0] > 1:  # InfoNCE needs negatives (see ``align``)
                terms["region_contrastive"] = terms["region_contrastive"] + contrastive_loss(
                    region, text, model.aligner.logit_scale
                )
            terms["region_class_alignment"] = terms["region_class_alignment"] + F.cross_entropy(
                scale * region @ classes.t(), diagnosis
            )
            prompted = model.aligner.project_global(out.features)
            terms["global_context"] = terms["global_context"] + (1 - (prompted * unprompted).sum(-1)).mean()
        terms = {k: v / len(maps) for k, v in terms.items()}
        total = (
            w.region_diagnosis * terms["region_diagnosis"]
            + w.region_contrastive * terms["region_contrastive"]
            + w.region_class_alignment * terms["region_class_alignment"]
            + w.global_context * terms["global_context"]
        )
        return total, terms
