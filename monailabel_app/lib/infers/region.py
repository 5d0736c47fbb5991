"""``radvlsm_region``: MedP-CLIP-style region recognition from a user's mask, box or clicks.

The region (an uploaded ``label`` mask, a ``roi`` box and/or ``foreground``/``background`` clicks) is
segmented by the prompted model (the returned label, with radiomics of that mask) and recognised through
the feature-level region prompt (:meth:`radvlsm.predictor.RadVLSMPredictor.predict_region`): the region's
malignancy probability, zero-shot class and BI-RADS descriptor scores, and the whole image's zero-shot scores
beside them (global context).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.images import LoadedImage, load_image_2d
from lib.infers.base import RadVLSMInferTask
from lib.prompts import parse_clicks, parse_roi
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.result import RadVLSMResult
from radvlsm.predictor import RadVLSMPredictor

METHOD = "feature-level-region-prompt"
CLASSES = ("benign", "malignant")


class RadVLSMRegion(RadVLSMInferTask):
    """Region in (an uploaded ``label`` mask, a ``roi`` box and/or clicks), region-level findings out."""

    default_name = "radvlsm_region"
    infer_type = InferType.OTHERS
    description = (
        "Rad-VLSM region recognition (feature-level region prompt): malignancy probability, zero-shot BI-RADS "
        "findings and radiomics of a region given as a mask (label upload), a roi box or foreground clicks"
    )

    def prompts(self, data: dict[str, Any], image: LoadedImage) -> dict[str, Any]:
        """The uploaded ``label`` file (non-zero = region), ``roi`` and clicks -> mask, box and point prompts.

        Raises:
            RadVLSMInputError: no region given, an unreadable or differently sized mask, an empty mask, a bad
                box or click.
        """
        box = parse_roi(data.get("roi"), image.size_hw)
        clicks = parse_clicks(data, image.size_hw)
        mask = None
        if data.get("label"):
            label = load_image_2d(str(data["label"]), role="label")
            mask = (image.from_file_geometry(label.gray, "label") > 0).astype(np.uint8)
            if not mask.any():
                raise RadVLSMInputError("the region mask is empty", "label")
        if mask is None and box is None and 1 not in clicks.get("point_labels", []):
            raise RadVLSMInputError(
                "give the region as a mask (label upload), a roi box or foreground clicks", "prompts"
            )
        return {"box": box, "mask": mask, **clicks}

    def findings(self, result: RadVLSMResult, prompts: dict[str, Any]) -> dict[str, Any]:
        """The prompted segmentation's part: its mask area, radiomics and fused malignancy probability."""
        return {
            "segmentation": {
                "lesion_area_px": int(result.mask.sum()),
                "malignancy_probability": float(result.malignancy_probability),
                "visual_malignancy_probability": float(result.visual_malignancy_probability),
                "prompt_mode": result.prompt_mode,
            },
            "radiomics": {k: float(v) for k, v in result.radiomics.items()},
            "region": {
                "box": prompts.get("box"),
                "points": prompts.get("points"),
                "mask_area_px": None if prompts.get("mask") is None else int(prompts["mask"].sum()),
            },
        }

    def recognize(self, predictor: RadVLSMPredictor, prompts: dict[str, Any]) -> dict[str, Any]:
        """Region-level recognition with the feature-level region prompt, and a classification ``prediction``."""
        region = predictor.predict_region(**prompts)
        p = float(region.malignancy_probability)
        return {
            "method": METHOD,
            **region.summary(),
            "prediction": [
                {"idx": i, "label": c, "score": s} for i, (c, s) in enumerate(zip(CLASSES, (1 - p, p), strict=True))
            ],
        }
