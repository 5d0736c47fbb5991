"""``radvlsm_region``: MedP-CLIP-style region recognition from a user's mask or box.

For now the region's findings come from the model's prompted prediction with the box and/or mask as
prompt; a feature-level region-prompt module will replace that later (the JSON says which method ran).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.images import LoadedImage, load_image_2d
from lib.infers.base import RadVLSMInferTask
from lib.prompts import parse_roi
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.result import RadVLSMResult

METHOD = "prompted-prediction"
CLASSES = ("benign", "malignant")


class RadVLSMRegion(RadVLSMInferTask):
    """Region in (an uploaded ``label`` mask and/or a ``roi`` box), region-level findings out."""

    default_name = "radvlsm_region"
    infer_type = InferType.OTHERS
    description = (
        "Rad-VLSM region recognition: malignancy probability, visual probability and radiomics of a "
        "region given as a mask (label upload) or a roi box"
    )

    def prompts(self, data: dict[str, Any], image: LoadedImage) -> dict[str, Any]:
        """The uploaded ``label`` file (non-zero = region) and/or ``roi`` -> mask and box prompts.

        Raises:
            RadVLSMInputError: neither given, an unreadable or differently sized mask, an empty mask, a bad box.
        """
        box = parse_roi(data.get("roi"), image.size_hw)
        mask = None
        if data.get("label"):
            label = load_image_2d(str(data["label"]), role="label")
            mask = (image.from_file_geometry(label.gray, "label") > 0).astype(np.uint8)
            if not mask.any():
                raise RadVLSMInputError("the region mask is empty", "label")
        if mask is None and box is None:
            raise RadVLSMInputError("give the region as a mask (label upload) or a roi box", "prompts")
        return {"box": box, "mask": mask}

    def findings(self, result: RadVLSMResult, prompts: dict[str, Any]) -> dict[str, Any]:
        """Region-level findings and a classification-style ``prediction`` list."""
        p = float(result.malignancy_probability)
        return {
            "method": METHOD,
            "diagnosis": result.diagnosis,
            "malignancy_probability": p,
            "visual_malignancy_probability": float(result.visual_malignancy_probability),
            "radiomics": {k: float(v) for k, v in result.radiomics.items()},
            "lesion_area_px": int(result.mask.sum()),
            "prompt_mode": result.prompt_mode,
            "region": {
                "box": prompts.get("box"),
                "mask_area_px": None if prompts.get("mask") is None else int(prompts["mask"].sum()),
            },
            "prediction": [
                {"idx": i, "label": c, "score": s} for i, (c, s) in enumerate(zip(CLASSES, (1 - p, p), strict=True))
            ],
        }
