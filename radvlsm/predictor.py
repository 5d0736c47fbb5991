"""RadVLSMPredictor: embed an image once, then segment, diagnose and recognise regions from it many times.

The contract of segment-anything's ``SamPredictor``: :meth:`RadVLSMPredictor.set_image` preprocesses the
image (:class:`radvlsm.data.transforms.ToModelFrame`) and computes its embedding (through an optional
:class:`radvlsm.embedding_cache.EmbeddingCache`, shared between images, requests and processes); then
:meth:`~RadVLSMPredictor.predict` (automatic, or with points / box / mask) and
:meth:`~RadVLSMPredictor.predict_region` reuse it. The predictor owns everything between user arrays and
the tensor model :class:`radvlsm.models.radvlsm.RadVLSM`: preprocessing, prompt validation, the mapping
between original pixels and the model frame, and the typed results in original image coordinates.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.data.transforms import ToModelFrame
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.candidates import lesion_box_at
from radvlsm.models.encoders.runtime import EncoderRuntime
from radvlsm.models.prompt_cache import ValueCache, array_key
from radvlsm.models.radvlsm import RadVLSM, RadVLSMOutput
from radvlsm.models.result import CandidateResult, RadVLSMResult, RegionRecognitionResult

logger = logging.getLogger(__name__)

PromptPoints = list[list[float]] | np.ndarray | None
PromptLabels = list[int] | np.ndarray | None
PromptBox = list[float] | np.ndarray | None

DIAGNOSIS_NAMES = ("benign", "malignant")


class RadVLSMPredictor:
    """Segmentation, diagnosis and region recognition of 2D images with a :class:`RadVLSM`.

    Args:
        model: the tensor model (its device is used; call ``.eval()`` on it first).
        embedding_cache: image embeddings kept across :meth:`set_image` calls (keyed by image content and the
            encoder weights); None computes each new image's embedding.
        encoder_runtime: runs the frozen image encoder exported (ONNX Runtime / OpenVINO, see
            :mod:`radvlsm.models.encoders.runtime`); None runs ``model.image_encoder`` in eager torch.

    Example::

        predictor = RadVLSMPredictor(model)
        predictor.set_image(image)          # (H, W) or (H, W, 3) array: one encoder pass
        auto = predictor.predict()          # prompt-free
        boxed = predictor.predict(box=[40, 30, 120, 90])
        region = predictor.predict_region(points=[[80, 60]])
    """

    mask_threshold = 0.5  # probability above which a pixel is lesion in the returned mask

    def __init__(
        self,
        model: RadVLSM,
        embedding_cache: EmbeddingCache | None = None,
        encoder_runtime: EncoderRuntime | None = None,
    ) -> None:
        self.model = model
        self.embedding_cache = embedding_cache
        self.encoder_runtime = encoder_runtime
        if encoder_runtime is not None and encoder_runtime.precision != "f32" and embedding_cache is not None:
            embedding_cache.namespace += f":{encoder_runtime.precision}"  # never mixed with float embeddings
        self.transform = ToModelFrame(model.image_size)
        self.input_cache = ValueCache(max_items=8)  # further prompts on an image skip the preprocessing
        self.reset_image()

    # ------------------------------------------------------------------ image
    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.geometry: LongestSideGeometry | None = None
        self.input_image: torch.Tensor | None = None
        self.features: torch.Tensor | None = None

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` has been called."""
        return self.features is not None

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Preprocess ``image`` and compute (or fetch from the cache) its embedding.

        Args:
            image: ``(H, W)`` grayscale, ``(H, W, 3|4)`` colour or ``(1, H, W)`` array, any numeric dtype.

        Raises:
            RadVLSMInputError: not one 2D image, too small, or NaN / infinite values.
        """
        x = self.input_cache.get_or_compute(array_key(np.asarray(image)), lambda: self.transform(image)[None])
        x = x.to(self.model.device)
        encoder = self.encoder_runtime or self.model.image_encoder
        cache = self.embedding_cache
        features = encoder(x) if cache is None else cache.get_or_compute(x, encoder)
        self.geometry = self.transform.geometry(image)
        self.input_image, self.features = x, features

    def _require_image(self) -> tuple[LongestSideGeometry, torch.Tensor, torch.Tensor]:
        if self.geometry is None or self.input_image is None or self.features is None:
            raise RadVLSMInputError("call set_image(image) before predicting", "predictor")
        return self.geometry, self.input_image, self.features

    # ------------------------------------------------------------------ segmentation + diagnosis
    @torch.inference_mode()
    def predict(
        self,
        points: PromptPoints = None,
        point_labels: PromptLabels = None,
        box: PromptBox = None,
        mask: np.ndarray | None = None,
    ) -> RadVLSMResult:
        """Segment and diagnose the current image; automatic (prompt-free) when no prompt is given.

        Args:
            points: ``[[x, y], ...]`` in original pixels, with ``point_labels`` (1 fg, 0 bg; default all 1).
            box: ``[x1, y1, x2, y2]`` in original pixels.
            mask: ``(H, W)`` user mask (non-zero = lesion) as a dense prompt.

        Returns:
            :class:`RadVLSMResult` at the original image size.

        Raises:
            RadVLSMInputError: no image set, or prompts outside the image, malformed or empty.
        """
        geometry, x, features = self._require_image()
        model = self.model
        prompts = validate_prompts(geometry, points, point_labels, box, mask)
        if prompts is None:
            out = model(embeddings=features, content_size=geometry.resized_size)
            if model.click_selects_lesion:  # a click after this result selects among its lesions at no cost
                model.automatic_mask(features, geometry.resized_size, out)
            mask_prob, visual_logits, visual_emb = out.mask_prob, out.fused.diag_logits, out.fused.region_emb
            candidates = candidate_results(out, geometry)
            response = geometry.model_to_original(out.cam[0, 0]).clamp(0, 1).cpu().numpy()
            mode = "automatic"
        else:
            p = {k: v.to(model.device) for k, v in prompts.items()}
            mode = "+".join(k for k in ("points", "box", "mask") if p.get(k) is not None)
            if mode == "points" and model.click_selects_lesion:
                p = self._select_lesion(p, features, geometry)
            mask_logits, visual_logits, visual_emb, _ = model.forward_prompted(
                features,
                boxes=p.get("box"),
                points=p.get("points"),
                point_labels=p.get("point_labels"),
                mask_inputs=p.get("mask"),
            )
            mask_prob = torch.sigmoid(mask_logits)
            candidates, response = [], None
        binary = (mask_prob > self.mask_threshold).float()
        final_logits, radiomics_values = model.fuse_radiomics(x, binary, visual_emb, visual_logits)
        prob_full = geometry.model_to_original(mask_prob[0, 0]).clamp(0, 1).cpu().numpy().astype(np.float32)
        radiomics = {}
        if radiomics_values is not None:
            radiomics = dict(zip(model.radiomics.feature_names, radiomics_values[0].tolist(), strict=False))
        return RadVLSMResult(
            mask=(prob_full > self.mask_threshold).astype(np.uint8),
            probability=prob_full,
            malignancy_probability=float(torch.softmax(final_logits, -1)[0, 1]),
            visual_malignancy_probability=float(torch.softmax(visual_logits, -1)[0, 1]),
            candidates=candidates,
            response_map=None if response is None else response.astype(np.float32),
            radiomics=radiomics,
            prompt_mode=mode,
        )

    def _select_lesion(
        self, prompts: dict[str, torch.Tensor], features: torch.Tensor, geometry: LongestSideGeometry
    ) -> dict[str, torch.Tensor]:
        """Clicks only: the first foreground click picks the automatic mask's lesion under it; the prompt becomes
        that lesion's box with the other clicks as corrections (unchanged when the click is on no lesion)."""
        points, labels = prompts["points"][0], prompts["point_labels"][0]
        foreground = (labels == 1).nonzero().flatten()
        if len(foreground) == 0:
            return prompts
        first = int(foreground[0])
        lesions = self.model.automatic_mask(features, geometry.resized_size)[0]
        box = lesion_box_at(lesions, points[first])
        if box is None:
            return prompts
        rest = torch.arange(len(labels), device=labels.device) != first
        selected = {"box": box[None].to(points.dtype)}
        if rest.any():
            selected |= {"points": points[rest][None], "point_labels": labels[rest][None]}
        return selected

    # ------------------------------------------------------------------ region recognition
    @torch.inference_mode()
    def predict_region(
        self,
        points: PromptPoints = None,
        point_labels: PromptLabels = None,
        box: PromptBox = None,
        mask: np.ndarray | None = None,
    ) -> RegionRecognitionResult:
        """Recognise a region of the current image (MedP-CLIP style), with the whole image in view.

        Args:
            points: ``[[x, y], ...]`` original pixels, with ``point_labels`` (1 fg, 0 bg; default all 1).
            box: ``[x1, y1, x2, y2]`` original pixels.
            mask: ``(H, W)`` region mask (non-zero = region).

        Returns:
            :class:`RegionRecognitionResult`: the region's malignancy probability (diagnosis head), zero-shot
            class and BI-RADS descriptor scores of the region, and the same zero-shot scores of the whole
            image, unprompted and with the region prompt supplied.

        Raises:
            RadVLSMInputError: no image set, no prompt, or prompts outside the image, malformed or empty.
        """
        geometry, _, features = self._require_image()
        model = self.model
        prompts = validate_prompts(geometry, points, point_labels, box, mask)
        if prompts is None:  # the rasteriser rejects background-only points the same way
            raise RadVLSMInputError("give the region as foreground points, a box or a mask", "region prompt")
        p = {k: v.to(model.device) for k, v in prompts.items()}
        region_map = model.region_map(p.get("points"), p.get("point_labels"), p.get("box"), p.get("mask"))
        out = model.recognize_region(features, region_map)
        classes = [[c] for c in model.class_prompts]

        def scores(emb: torch.Tensor) -> dict[str, float]:
            return dict(zip(DIAGNOSIS_NAMES, model.zero_shot(emb, classes)[0].tolist(), strict=True))

        descriptors = {
            category: dict(
                zip(entries, model.zero_shot(out.region_emb, list(entries.values()))[0].tolist(), strict=True)
            )
            for category, entries in model.descriptor_prompts.items()
        }
        h, w = geometry.resized_size
        return RegionRecognitionResult(
            malignancy_probability=float(torch.softmax(out.diag_logits, -1)[0, 1]),
            zero_shot=scores(out.region_emb),
            descriptors=descriptors,
            image_zero_shot=scores(features.mean(dim=(2, 3))),
            image_zero_shot_prompted=scores(out.global_emb),
            region_area_fraction=float(region_map[0, 0, :h, :w].mean()),
            prompt_mode="+".join(k for k in ("points", "box", "mask") if prompts.get(k) is not None),
            region_prompt_trained=model.region_prompt_trained,
        )


def candidate_results(out: RadVLSMOutput, geometry: LongestSideGeometry) -> list[CandidateResult]:
    """The valid automatic candidates of image 0 of ``out``, in original pixels, with their reliability."""
    c = out.candidates
    h, w = geometry.original_size
    bounds = torch.tensor([w, h, w, h], dtype=torch.float32)
    results = []
    for k in range(c.boxes.shape[1]):
        if not bool(c.valid[0, k]):
            continue
        keep = c.point_labels[0, k] >= 0
        box = torch.minimum(geometry.boxes_to_original(c.boxes[0, k].cpu()), bounds)
        points = torch.minimum(geometry.points_to_original(c.points[0, k][keep].cpu()), bounds[:2])
        results.append(
            CandidateResult(
                box=[round(v, 2) for v in box.tolist()],
                points=[[round(v, 2) for v in p] for p in points.tolist()],
                point_labels=[int(v) for v in c.point_labels[0, k][keep].tolist()],
                reliability=float(out.fused.weights[0, k]),
                cam_strength=float(c.cam_strength[0, k]),
                kept=bool(out.fused.kept[0, k]),
            )
        )
    return results


def validate_prompts(
    geometry: LongestSideGeometry,
    points: PromptPoints,
    point_labels: PromptLabels,
    box: PromptBox,
    mask: np.ndarray | None,
) -> dict[str, torch.Tensor] | None:
    """Check user prompts against the image and map them to the model frame (batch of one).

    Returns:
        ``points (1, P, 2)``, ``point_labels (1, P)``, ``box (1, 4)``, ``mask (1, 1, S, S)`` as given; None
        when no prompt is given.

    Raises:
        RadVLSMInputError: for prompts outside the image, malformed shapes or an empty box or mask.
    """
    h, w = geometry.original_size
    out: dict[str, torch.Tensor] = {}
    if points is not None and len(points) > 0:
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
            raise RadVLSMInputError(f"points must be a list of [x, y] pairs, got shape {pts.shape}", "points")
        outside = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if outside.any():
            raise RadVLSMInputError(
                f"point {pts[outside][0].tolist()} lies outside the {w}x{h} image (x in [0, {w}], y in [0, {h}])",
                "points",
            )
        labels = np.ones(len(pts), dtype=np.int64) if point_labels is None else np.asarray(point_labels, np.int64)
        if labels.shape != (len(pts),) or not np.isin(labels, (0, 1)).all():
            raise RadVLSMInputError("point_labels must hold one 0 or 1 per point", "point_labels")
        out["points"] = geometry.points_to_model(pts)[None]
        out["point_labels"] = torch.as_tensor(labels)[None]
    if box is not None:
        b = np.asarray(box, dtype=np.float32).reshape(-1)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise RadVLSMInputError("box must be [x1, y1, x2, y2]", "box")
        if b[2] <= b[0] or b[3] <= b[1]:
            raise RadVLSMInputError(f"box {b.tolist()} has no area (need x2 > x1 and y2 > y1)", "box")
        if b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h:
            raise RadVLSMInputError(f"box {b.tolist()} lies outside the {w}x{h} image", "box")
        out["box"] = geometry.boxes_to_model(b)[None]
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (h, w):
            raise RadVLSMInputError(f"mask is {m.shape}, the image is {(h, w)}", "mask")
        if not m.any():
            raise RadVLSMInputError("mask prompt is empty", "mask")
        out["mask"] = geometry.mask_to_model((m > 0).astype(np.float32))[None]
    return out or None
