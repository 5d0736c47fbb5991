"""RadVLSM: the assembled model (semantic-to-spatial prompt reliability learning).

One image-encoder pass per image feeds everything downstream::

    image (B,1,S,S) ─► image encoder ─► embedding (B,C,h,w)
      lesion prompt ─► text encoder ─► aligner ─────────────────┐
      embedding + aligner patches ─► FiLM focus + context U-Net ┴─► response map (B,1,S,S) (mask-supervised)
      response map ─► K candidate boxes + points; L learned prompts (decoder tokens, no box or point)
      embedding + candidates ─► SAM decoder, tuned copy (box, point, learned prompts) ─► K+L masks, IoU predictions
      masks ─► region embeddings ─► cues ─► reliability head ─► weights
      MCRA(masks, diagnosis logits, region embeddings; reliability) ─► mask, logits, embedding
      fused mask's lesion boxes ─► user-box decoder (box_refine) ─► automatic mask
      radiomics(image, mask) ─► standardise ─► visual-radiomics fusion ─► final diagnosis

User prompts (points, box, mask) replace the candidates and reuse the same embedding. Tensors in, tensors out
(model frame); :class:`radvlsm.predictor.RadVLSMPredictor` maps user arrays and prompts to and from it.
Region recognition (MedP-CLIP style, :meth:`RadVLSM.recognize_region`) rasterises the same prompts to a region
map that enters the embedding through a zero-initialised feature-level path (:mod:`radvlsm.models.region_prompt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.candidates import CandidateGenerator, CandidatePrompts
from radvlsm.models.decode import decode_candidates, decode_prompts, decode_sparse
from radvlsm.models.focus import minmax_per_image
from radvlsm.models.mcra import MCRA, MCRAOutput
from radvlsm.models.prompt_cache import ValueCache, embedding_key, weights_fingerprint
from radvlsm.models.region_prompt import RegionRasterizer, pool_region
from radvlsm.models.reliability import (
    ReliabilityHead,
    cam_coverage_cue,
    cam_response_cue,
    mask_consistency_cue,
    semantic_consistency_cue,
    stack_cues,
)

logger = logging.getLogger(__name__)


@dataclass
class RadVLSMOutput:
    """Tensors of one forward pass (model frame, ``S x S``).

    Args:
        cam_logits: ``(B, 1, 2h, 2w)`` focusing logits.
        cam: ``(B, 1, S, S)`` response map in [0, 1].
        candidates: the K map candidates followed by the L learned-prompt candidates (boxes from their masks).
        mask_logits: ``(B, K+L, 1, S, S)`` masks from the candidate boxes, then from the learned prompts.
        point_mask_logits: ``(B, K, 1, S, S)`` masks from the candidate points (self-distillation pair).
        iou_pred: ``(B, K+L)`` SAM's IoU predictions.
        region_emb: ``(B, K+L, C)`` mask-pooled region embeddings.
        cues: ``(B, K+L, 5)`` reliability cues (CAM response, CAM coverage, semantic consistency, mask
            consistency, SAM IoU prediction).
        reliability_logits: ``(B, K+L)``.
        candidate_diag_logits: ``(B, K+L, 2)``.
        fused: the MCRA output (mask probability, diagnosis logits, region embedding, weights).
        mask_prob: ``(B, 1, S, S)`` the automatic mask probability: the fused mask, re-decoded by the user-box
            decoder from the boxes of its lesions when ``box_refine`` is on (``fused.mask_prob`` otherwise).
    """

    cam_logits: torch.Tensor
    cam: torch.Tensor
    candidates: CandidatePrompts
    mask_logits: torch.Tensor
    point_mask_logits: torch.Tensor
    iou_pred: torch.Tensor
    region_emb: torch.Tensor
    cues: torch.Tensor
    reliability_logits: torch.Tensor
    candidate_diag_logits: torch.Tensor
    fused: MCRAOutput
    mask_prob: torch.Tensor


@dataclass
class RegionOutput:
    """Region recognition tensors (see :meth:`RadVLSM.recognize_region`).

    Args:
        features: ``(B, C, h, w)`` prompted image features.
        region_emb: ``(B, C)`` region embedding with global context.
        global_emb: ``(B, C)`` whole-image embedding of the prompted features.
        diag_logits: ``(B, 2)`` diagnosis logits of the region.
    """

    features: torch.Tensor
    region_emb: torch.Tensor
    global_emb: torch.Tensor
    diag_logits: torch.Tensor


class RadVLSM(nn.Module):
    """Rad-VLSM: automatic and prompted lesion segmentation with reliability-weighted diagnosis.

    Args:
        image_encoder: ``(B, 1|3, S, S)`` -> ``(B, C, h, w)``; has ``image_size``.
        mask_decoder: :class:`radvlsm.models.sam.PromptableMaskDecoder`.
        text_encoder: :class:`radvlsm.models.encoders.text_encoder.TextEncoder` (frozen).
        aligner: :class:`radvlsm.models.align.SemanticAligner`.
        focus: :class:`radvlsm.models.focus.TextConditionedFocus`.
        candidate_generator: :class:`radvlsm.models.candidates.CandidateGenerator`.
        reliability_head: :class:`radvlsm.models.reliability.ReliabilityHead`.
        mcra: :class:`radvlsm.models.mcra.MCRA`.
        diagnosis_head: region embedding ``(.., C)`` -> logits ``(.., 2)``.
        lesion_prompt: the fixed, class-agnostic text prompt used for focusing.
        class_prompts: one text per diagnosis class (benign, malignant) for zero-shot scores.
        fusion: optional :class:`radvlsm.models.fusion.VisualRadiomicsFusion`.
        standardizer: optional :class:`radvlsm.models.fusion.RadiomicsStandardizer` (with ``fusion``).
        radiomics: optional :class:`radvlsm.models.radiomics.RadiomicsExtractor` (not a module: no weights).
        prompt_learner: optional CoOp :class:`radvlsm.models.align.PromptLearner` for the lesion prompt.
        click_to_box: complete click-only prompts with a box from the response map (see ``boxes_from_clicks``).
        click_selects_lesion: a click-only prompt's first foreground click selects the automatic mask's lesion
            under it, whose box the user-box decoder decodes with the other clicks as corrections (see
            :meth:`automatic_mask`; applied by :class:`radvlsm.predictor.RadVLSMPredictor`); a click on no
            lesion takes the ``click_to_box`` route.
        region_prompt: optional :class:`radvlsm.models.region_prompt.RegionPromptEncoder` (region recognition).
        region_context: optional :class:`radvlsm.models.region_prompt.RegionContextFusion` (with ``region_prompt``).
        descriptor_prompts: ``{category: {descriptor: [prompts]}}`` (BI-RADS lexicon) for zero-shot findings.
        point_sigma: a region point's blob size, as a fraction of the model frame.
        learned_prompts: optional :class:`radvlsm.models.learned_prompts.LearnedPrompts`: mask-only candidates
            from learned decoder tokens (no box or point), scored with the others.
        box_refine: re-decode the fused automatic mask from the boxes of its lesions (connected components) with
            the user-box decoder, a box-prompt cascade step; the result is :attr:`RadVLSMOutput.mask_prob`.
        auto_decoder: optional tuned copy of ``mask_decoder`` for the automatic candidates and for clicks;
            ``mask_decoder`` itself (LiteMedSAM's weights, never tuned) serves user masks, and user boxes when
            there is no ``box_decoder``.
        box_decoder: optional copy of ``mask_decoder`` for user boxes, tuned on truth boxes (stage ``box``) and
            kept only where it beats LiteMedSAM's weights on validation (otherwise it holds them unchanged).
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        mask_decoder: nn.Module,
        text_encoder: nn.Module,
        aligner: nn.Module,
        focus: nn.Module,
        candidate_generator: CandidateGenerator,
        reliability_head: ReliabilityHead,
        mcra: MCRA,
        diagnosis_head: nn.Module,
        lesion_prompt: str,
        class_prompts: tuple[str, str] | list[str],
        descriptor_prompts: dict[str, dict[str, list[str]]],
        click_to_box: bool,
        click_selects_lesion: bool,
        point_sigma: float,
        box_refine: bool,
        learned_prompts: nn.Module | None = None,
        auto_decoder: nn.Module | None = None,
        box_decoder: nn.Module | None = None,
        fusion: nn.Module | None = None,
        standardizer: nn.Module | None = None,
        radiomics=None,
        prompt_learner: nn.Module | None = None,
        region_prompt: nn.Module | None = None,
        region_context: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.text_encoder = text_encoder
        self.aligner = aligner
        self.focus = focus
        self.candidate_generator = candidate_generator
        self.reliability_head = reliability_head
        self.mcra = mcra
        self.diagnosis_head = diagnosis_head
        self.fusion = fusion
        self.standardizer = standardizer
        self.radiomics = radiomics
        self.prompt_learner = prompt_learner
        self.lesion_prompt = lesion_prompt
        self.class_prompts = list(class_prompts)
        self.click_to_box = click_to_box
        self.click_selects_lesion = click_selects_lesion
        self.region_prompt = region_prompt
        self.region_context = region_context
        self.descriptor_prompts = {c: {k: list(v) for k, v in d.items()} for c, d in descriptor_prompts.items()}
        self.point_sigma = point_sigma
        self.box_refine = box_refine
        self.learned_prompts = learned_prompts
        self.auto_decoder = auto_decoder
        self.box_decoder = box_decoder
        self.candidate_cache = ValueCache(max_items=32)  # click path: response-map candidates once per image
        self.lesion_cache = ValueCache(max_items=32)  # click selection: the automatic mask once per image
        self.text_cache = ValueCache()  # inference: the lesion prompt's embedding

    def train(self, mode: bool = True) -> RadVLSM:
        """Set training mode; a frozen image encoder stays in eval mode (its BatchNorm statistics are fixed)."""
        super().train(mode)
        if not any(p.requires_grad for p in self.image_encoder.parameters()):
            self.image_encoder.eval()
        return self

    # ------------------------------------------------------------------ basic parts
    @property
    def candidate_decoder(self) -> nn.Module:
        """The decoder of the automatic candidates (and of clicks): the tuned copy when there is one."""
        return self.mask_decoder if self.auto_decoder is None else self.auto_decoder

    @property
    def user_box_decoder(self) -> nn.Module:
        """The decoder of user boxes (with or without clicks): the box-tuned copy when there is one."""
        return self.mask_decoder if self.box_decoder is None else self.box_decoder

    @property
    def image_size(self) -> int:
        """Side ``S`` of the square model frame."""
        return int(self.image_encoder.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.aligner.parameters()).device

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S, S)`` -> ``(B, C, h, w)`` image embeddings."""
        return self.image_encoder(images)

    def text_embedding(self, texts: list[str]) -> torch.Tensor:
        """Projected, L2-normalised text embeddings ``(T, E)`` (frozen text tower, trainable projection)."""
        raw = self.text_encoder.encode(texts).to(self.device)
        return self.aligner.project_text(raw)

    def lesion_embedding(self) -> torch.Tensor:
        """``(E,)`` embedding of the class-agnostic lesion prompt (with CoOp context when configured)."""
        if not torch.is_grad_enabled():  # inference: the text tower runs once per weights, not twice per image
            salt = weights_fingerprint(self.text_encoder, self.prompt_learner, self.aligner)
            return self.text_cache.get_or_compute(f"{salt}:{self.device}:{self.lesion_prompt}", self._lesion_embedding)
        return self._lesion_embedding()

    def _lesion_embedding(self) -> torch.Tensor:
        if self.prompt_learner is None:
            return self.text_embedding([self.lesion_prompt])[0]
        tokens, mask = self.text_encoder.token_embeddings([self.lesion_prompt])
        embeds, mask = self.prompt_learner(tokens.to(self.device), mask.to(self.device))
        raw = self.text_encoder.encode_embeddings(embeds, mask)
        return F.normalize(self.aligner.project_text(raw), dim=-1)[0]

    def focus_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, 1, 2h, 2w)`` focusing logits, conditioned on the lesion prompt."""
        patches = self.aligner.project_patches(embeddings)
        return self.focus(embeddings, patches, self.lesion_embedding())

    def diagnose(self, region_emb: torch.Tensor) -> torch.Tensor:
        """Region embeddings ``(.., C)`` -> diagnosis logits ``(.., 2)``."""
        return self.diagnosis_head(region_emb)

    # ------------------------------------------------------------------ automatic pipeline
    def forward(
        self,
        images: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
        content_size: tuple[int, int] | None = None,
    ) -> RadVLSMOutput:
        """Automatic, prompt-free pass.

        Args:
            images: ``(B, 1, S, S)`` model-frame images in [0, 1] (ignored when ``embeddings`` is given).
            embeddings: ``(B, C, h, w)`` precomputed image embeddings.
            content_size: ``(h, w)`` of the image inside the padded frame; the response map is zeroed on the
                padding so candidates stay on the image.

        Returns:
            :class:`RadVLSMOutput`.
        """
        if embeddings is None:
            if images is None:
                raise RadVLSMInputError("give images or embeddings", "forward")
            embeddings = self.encode_image(images)
        size = self.image_size
        cam_logits = self.focus_logits(embeddings)
        focus_prob = F.interpolate(torch.sigmoid(cam_logits), size=(size, size), mode="bilinear", align_corners=False)
        cam = minmax_per_image(focus_prob)  # relative response: candidate thresholds do not depend on calibration
        content = None  # (S, S) bool, True on the image (not the padding)
        if content_size is not None:
            content = torch.zeros(size, size, dtype=torch.bool, device=cam.device)
            content[: content_size[0], : content_size[1]] = True
            cam = minmax_per_image(cam * content)
        candidates = self.candidate_generator(cam.detach()).to(embeddings.device)
        if content_size is not None:  # margins must not push boxes and points onto the padding
            limit = torch.tensor([content_size[1], content_size[0]], dtype=torch.float32, device=embeddings.device)
            candidates.boxes = torch.minimum(candidates.boxes, limit.repeat(2))
            candidates.points = torch.minimum(candidates.points, limit - 1)
        box_out, point_out, learned_out = decode_candidates(  # one decoder pass per image; ruled-out not decoded
            self.candidate_decoder,
            embeddings,
            candidates.boxes,
            candidates.points,
            candidates.point_labels,
            candidates.valid,
            learned=None if self.learned_prompts is None else self.learned_prompts(),
        )
        mask_logits, iou_pred = box_out.mask_logits, box_out.iou_pred
        paired = torch.sigmoid(point_out.mask_logits)  # self-distillation pair: the same candidate's points
        if learned_out is not None:  # learned prompts: no box or point; paired with the focusing map itself
            learned_logits = learned_out.mask_logits
            if content is not None:  # nothing on the padding
                learned_logits = learned_logits.masked_fill(~content, -20.0)
            candidates = candidates.append_masks(learned_logits, cam)
            mask_logits = torch.cat([mask_logits, learned_logits], 1)
            iou_pred = torch.cat([iou_pred, learned_out.iou_pred], 1)
            paired = torch.cat([paired, focus_prob[:, None].expand(-1, learned_logits.shape[1], -1, -1, -1)], 1)
        region_emb = self.mask_decoder.region_embedding(embeddings, mask_logits)
        lesion = self.lesion_embedding()
        cues = stack_cues(
            cam_response_cue(cam, torch.sigmoid(mask_logits)),
            cam_coverage_cue(cam, torch.sigmoid(mask_logits)),
            semantic_consistency_cue(self.aligner.project_region(region_emb), lesion),
            mask_consistency_cue(torch.sigmoid(mask_logits), paired),
            iou_pred,
        )
        reliability_logits = self.reliability_head(cues)
        candidate_diag_logits = self.diagnose(region_emb)
        fused = self.mcra(mask_logits, candidate_diag_logits, region_emb, reliability_logits, candidates.valid)
        mask_prob = self.refine_with_boxes(embeddings, fused.mask_prob, content) if self.box_refine else fused.mask_prob
        return RadVLSMOutput(
            cam_logits=cam_logits,
            cam=cam,
            candidates=candidates,
            mask_logits=mask_logits,
            point_mask_logits=point_out.mask_logits,
            iou_pred=iou_pred,
            region_emb=region_emb,
            cues=cues,
            reliability_logits=reliability_logits,
            candidate_diag_logits=candidate_diag_logits,
            fused=fused,
            mask_prob=mask_prob,
        )

    @torch.no_grad()
    def refine_with_boxes(
        self, embeddings: torch.Tensor, mask_prob: torch.Tensor, content: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Re-decode a mask from the boxes of its lesions with the user-box decoder (one pass per image).

        Each 8-connected component of ``mask_prob > 0.5`` gives one box prompt; the new mask is the highest
        probability over the components' masks. An image without foreground keeps its mask. Not differentiable
        (the boxes are read off the mask): training losses use the fused mask itself.

        Args:
            embeddings: ``(B, C, h, w)``; mask_prob: ``(B, 1, S, S)`` in [0, 1].
            content: ``(S, S)`` bool, True on the image (not the padding), or None.

        Returns:
            ``(B, 1, S, S)`` mask probability.
        """
        out = mask_prob.clone()
        binary = (mask_prob[:, 0] > 0.5).cpu().numpy()
        for b in range(mask_prob.shape[0]):
            labels, n = ndimage.label(binary[b], structure=np.ones((3, 3), dtype=bool))
            if n == 0:
                continue
            boxes = torch.tensor(
                [[sx.start, sy.start, sx.stop, sy.stop] for sy, sx in ndimage.find_objects(labels)],
                dtype=embeddings.dtype,
                device=embeddings.device,
            )
            decoder = self.user_box_decoder
            sparse, _ = decoder.prompt_encoder(points=None, boxes=boxes, masks=None)
            tokens = torch.ones(sparse.shape[:2], dtype=torch.bool, device=sparse.device)
            logits, _, _ = decode_sparse(decoder, embeddings[b : b + 1], sparse, tokens)  # (n, 1, S, S), one pass
            prob = torch.sigmoid(logits[:, 0]).amax(0).to(mask_prob.dtype)
            out[b, 0] = prob if content is None else prob * content
        return out

    # ------------------------------------------------------------------ prompted pipeline
    @torch.no_grad()
    def automatic_mask(
        self,
        embeddings: torch.Tensor,
        content_size: tuple[int, int] | None = None,
        out: RadVLSMOutput | None = None,
    ) -> torch.Tensor:
        """The automatic pass's lesion mask (``mask_prob > 0.5``), kept per image for click selection.

        Args:
            embeddings: ``(B, C, h, w)``; content_size: as in :meth:`forward`.
            out: this automatic pass, already run on ``embeddings`` (stored rather than recomputed, so that a
                click after the automatic result costs no second pass).

        Returns:
            ``(B, S, S)`` bool, on the CPU.
        """
        settings = (self.box_refine, self.mcra.cluster_iou, self.mcra.keep_threshold, self.mcra.temperature)
        key = weights_fingerprint(self, self.candidate_generator) + repr(settings) + embedding_key(embeddings)
        key += repr(content_size)

        def compute() -> torch.Tensor:
            result = out if out is not None else self(embeddings=embeddings, content_size=content_size)
            return (result.mask_prob[:, 0] > 0.5).cpu()

        return self.lesion_cache.get_or_compute(key, compute)

    def forward_prompted(
        self,
        embeddings: torch.Tensor,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment and diagnose from user prompts (model frame), one prompt set per image.

        Args:
            embeddings: ``(B, C, h, w)``.
            boxes: ``(B, 4)`` or None.
            points: ``(B, P, 2)`` or None, with ``point_labels`` ``(B, P)`` (1 fg, 0 bg).
            mask_inputs: ``(B, 1, S, S)`` mask logits or None (a user mask as a dense prompt).

        Returns:
            mask logits ``(B, 1, S, S)``, diagnosis logits ``(B, 2)``, region embedding ``(B, C)``,
            IoU prediction ``(B,)``.
        """
        clicks_only = boxes is None and mask_inputs is None and points is not None
        # a user mask goes to LiteMedSAM's own decoder, a user box to the box-tuned copy when there is one (it
        # holds LiteMedSAM's weights unless tuning beat them on validation); clicks, completed with a box from the
        # response map, go to the automatic path's tuned copy when there is one (it is better on validation clicks)
        if clicks_only:
            decoder = self.candidate_decoder
        elif mask_inputs is None:
            decoder = self.user_box_decoder
        else:
            decoder = self.mask_decoder
        if self.click_to_box and clicks_only:
            boxes = self.boxes_from_clicks(embeddings, points, point_labels)
        if mask_inputs is None:  # sparse prompts only: the batched decoder (same outputs, one pass)
            out = decode_prompts(decoder, embeddings, boxes, points, point_labels)
        else:
            out = decoder(
                embeddings,
                boxes=None if boxes is None else boxes[:, None],
                points=None if points is None else points[:, None],
                point_labels=None if point_labels is None else point_labels[:, None],
                mask_inputs=self._mask_prompt(mask_inputs)[:, None],
            )
        region = self.mask_decoder.region_embedding(embeddings, out.mask_logits)[:, 0]
        return out.mask_logits[:, 0], self.diagnose(region), region, out.iou_pred[:, 0]

    def boxes_from_clicks(
        self, embeddings: torch.Tensor, points: torch.Tensor, point_labels: torch.Tensor | None
    ) -> torch.Tensor:
        """Turn clicks into a box prompt with the lesion response map (clicks alone are ambiguous for SAM).

        Among the automatic candidates, the most responsive box that holds every foreground click and no
        background click is chosen; without one, a square of a quarter of the frame centred on the clicks.

        Args:
            embeddings: ``(B, C, h, w)``.
            points: ``(B, P, 2)`` model-frame clicks; point_labels: ``(B, P)`` (1 fg, 0 bg; None = all fg).

        Returns:
            ``(B, 4)`` boxes, used together with the clicks.
        """
        size = self.image_size
        labels = (
            torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
            if point_labels is None
            else point_labels
        )

        def generate() -> CandidatePrompts:
            with torch.no_grad():
                cam = F.interpolate(torch.sigmoid(self.focus_logits(embeddings)), size=(size, size), mode="bilinear")
                return self.candidate_generator(minmax_per_image(cam)).to("cpu")

        salt = weights_fingerprint(self.aligner, self.focus, self.prompt_learner, self.candidate_generator)
        key = salt + embedding_key(embeddings)
        cands = self.candidate_cache.get_or_compute(key, generate).to(points.device)  # once per image
        boxes = []
        for b in range(points.shape[0]):
            pos, neg = points[b][labels[b] == 1], points[b][labels[b] == 0]
            anchor = pos if len(pos) else points[b]
            chosen, best = None, -float("inf")
            for k in range(cands.boxes.shape[1]):
                box, strength = cands.boxes[b, k], float(cands.cam_strength[b, k])
                usable = bool(cands.valid[b, k]) and _inside(anchor, box).all() and not _inside(neg, box).any()
                if usable and strength > best:
                    chosen, best = box, strength
            if chosen is None:
                centre, half = anchor.mean(0), size / 8
                chosen = torch.cat([centre - half, centre + half]).clamp(0, size)
            boxes.append(chosen)
        return torch.stack(boxes).to(embeddings.dtype)

    def _mask_prompt(self, mask: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S, S)`` binary/probability mask -> dense mask-prompt logits (SAM's prompt encoder takes ``S``)."""
        return (mask.float() * 2 - 1) * 8.0

    # ------------------------------------------------------------------ region recognition (MedP-CLIP)
    def region_map(
        self,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rasterise one model-frame prompt set per image (points, box and/or mask) -> ``(B, 1, S, S)`` map."""
        return RegionRasterizer(self.image_size, self.point_sigma)(points, point_labels, boxes, masks)

    @property
    def region_prompt_trained(self) -> bool:
        """Whether the feature-level region prompt path holds trained (non-zero) weights."""
        return self.region_prompt is not None and bool(self.region_prompt.to_features.weight.detach().abs().sum() > 0)

    def prompted_features(self, embeddings: torch.Tensor, region_map: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` features steered by a ``(B, 1, S, S)`` region map (unchanged without the module)."""
        if self.region_prompt is None:
            return embeddings
        return self.region_prompt(embeddings, region_map)

    def recognize_region(self, embeddings: torch.Tensor, region_map: torch.Tensor) -> RegionOutput:
        """Region-level recognition with the whole image kept in view.

        Args:
            embeddings: ``(B, C, h, w)`` image embeddings (unprompted encoder output).
            region_map: ``(B, 1, S, S)`` from :meth:`region_map`.

        Returns:
            :class:`RegionOutput`: prompted features, region embedding (pooled under the map, completed with
            the global embedding), global embedding and the diagnosis head's logits on the region.
        """
        features = self.prompted_features(embeddings, region_map)
        region = pool_region(features, region_map)
        global_emb = features.mean(dim=(2, 3))
        if self.region_context is not None:
            region = self.region_context(region, global_emb)
        return RegionOutput(features, region, global_emb, self.diagnose(region))

    def zero_shot(self, emb: torch.Tensor, classes: list[list[str]]) -> torch.Tensor:
        """Zero-shot probabilities of ``(B, C)`` image-side embeddings over text classes.

        Args:
            emb: ``(B, C)`` region or global embeddings (before projection).
            classes: one list of prompts per class; a class's text embedding is the mean of its prompts'.

        Returns:
            ``(B, len(classes))`` softmax probabilities at the aligner's contrastive scale.
        """
        if not classes or any(not c for c in classes):
            raise RadVLSMInputError("give at least one prompt per class", "classes")
        texts = torch.stack([F.normalize(self.text_embedding(list(c)).mean(0), dim=-1) for c in classes])
        return torch.softmax(self.aligner.scale() * self.aligner.project_region(emb) @ texts.t(), dim=-1)

    # ------------------------------------------------------------------ radiomics fusion
    def fuse_radiomics(
        self, images: torch.Tensor, mask_prob: torch.Tensor, visual_emb: torch.Tensor, visual_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Final diagnosis logits from visual evidence and radiomics of the predicted mask.

        Args:
            images: ``(B, 1, S, S)``; mask_prob: ``(B, 1, S, S)``; visual_emb: ``(B, C)``; visual_logits: ``(B, 2)``.

        Returns:
            fused logits ``(B, 2)`` (the visual logits when radiomics is off) and the raw radiomics ``(B, R)``.
        """
        if self.radiomics is None or self.fusion is None or self.standardizer is None:
            return visual_logits, None
        features = self.radiomics.extract_batch(images, mask_prob).to(visual_emb.device)
        return self.fusion(visual_emb, self.standardizer(features), visual_logits), features


def _inside(points: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``(P,)`` whether each ``(P, 2)`` point lies in the ``x1, y1, x2, y2`` box."""
    return (points[:, 0] >= box[0]) & (points[:, 0] <= box[2]) & (points[:, 1] >= box[1]) & (points[:, 1] <= box[3])
