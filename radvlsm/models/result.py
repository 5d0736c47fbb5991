"""Typed results of the assembled model, in original image coordinates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class CandidateResult:
    """One automatic candidate prompt, in original image pixels.

    Args:
        box: ``[x1, y1, x2, y2]``.
        points: ``[[x, y], ...]`` with ``point_labels`` (1 foreground, 0 background).
        reliability: the candidate's MCRA weight (weights of one image sum to 1).
        cam_strength: mean response inside the box minus outside.
        kept: whether MCRA kept the candidate's lesion in the fused mask.
    """

    box: list[float]
    points: list[list[float]]
    point_labels: list[int]
    reliability: float
    cam_strength: float
    kept: bool


@dataclass
class RadVLSMResult:
    """Everything the model says about one image.

    Args:
        mask: ``(H, W)`` uint8 lesion mask (0/1) at the original image size.
        probability: ``(H, W)`` float32 lesion probability at the original size.
        malignancy_probability: probability that the lesion is malignant (after radiomics fusion).
        visual_malignancy_probability: the same from the visual evidence alone.
        candidates: the automatic candidate prompts with their reliability (empty for user prompts).
        response_map: ``(H, W)`` float32 lesion-focusing map in [0, 1] at the original size.
        radiomics: pyradiomics features of the predicted mask (empty when radiomics is off).
        prompt_mode: ``"automatic"``, ``"points"``, ``"box"``, ``"mask"`` or a combination.
    """

    mask: np.ndarray
    probability: np.ndarray
    malignancy_probability: float
    visual_malignancy_probability: float
    candidates: list[CandidateResult] = field(default_factory=list)
    response_map: np.ndarray | None = None
    radiomics: dict[str, float] = field(default_factory=dict)
    prompt_mode: str = "automatic"

    @property
    def diagnosis(self) -> str:
        """``"malignant"`` when the malignancy probability is at least 0.5, else ``"benign"``."""
        return "malignant" if self.malignancy_probability >= 0.5 else "benign"

    def summary(self) -> dict:
        """JSON-ready summary (no pixel arrays): diagnosis, probabilities, candidates, radiomics, lesion area."""
        return {
            "diagnosis": self.diagnosis,
            "malignancy_probability": round(float(self.malignancy_probability), 6),
            "visual_malignancy_probability": round(float(self.visual_malignancy_probability), 6),
            "lesion_area_px": int(self.mask.sum()),
            "prompt_mode": self.prompt_mode,
            "candidates": [asdict(c) for c in self.candidates],
            "radiomics": {k: float(v) for k, v in self.radiomics.items()},
        }


@dataclass
class RegionRecognitionResult:
    """Region-level recognition of one prompted region, with the whole image's view beside it.

    Args:
        malignancy_probability: the diagnosis head's probability that the region is malignant.
        zero_shot: the region's zero-shot probabilities over the class prompts (``benign``, ``malignant``).
        descriptors: ``{category: {descriptor: probability}}`` zero-shot BI-RADS findings of the region.
        image_zero_shot: the whole image's zero-shot class probabilities without the prompt.
        image_zero_shot_prompted: the same with the region prompt supplied (global context check).
        region_area_fraction: share of the image the region map covers.
        prompt_mode: ``"points"``, ``"box"``, ``"mask"`` or a combination.
        region_prompt_trained: whether the feature-level prompt path holds trained (non-zero) weights; when
            False the prompted features equal the unprompted ones and the region is plain mask pooling.
    """

    malignancy_probability: float
    zero_shot: dict[str, float]
    descriptors: dict[str, dict[str, float]]
    image_zero_shot: dict[str, float]
    image_zero_shot_prompted: dict[str, float]
    region_area_fraction: float
    prompt_mode: str
    region_prompt_trained: bool

    @property
    def diagnosis(self) -> str:
        """``"malignant"`` when the malignancy probability is at least 0.5, else ``"benign"``."""
        return "malignant" if self.malignancy_probability >= 0.5 else "benign"

    def summary(self) -> dict:
        """JSON-ready dictionary of every field plus the diagnosis."""
        return {"diagnosis": self.diagnosis, **asdict(self)}
