"""``radvlsm_interactive``: foreground/background clicks and an optional ROI box (OHIF and Slicer point tools)."""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.images import LoadedImage
from lib.infers.base import RadVLSMInferTask
from lib.prompts import parse_clicks, parse_roi
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.result import RadVLSMResult


class RadVLSMInteractive(RadVLSMInferTask):
    """Prompted segmentation (type ``deepgrow``, so clients' point and ROI tools drive it).

    The image embedding is cached per image by the predictor, so after the first click on an image each
    further click only runs the prompt encoder and mask decoder.
    """

    default_name = "radvlsm_interactive"
    infer_type = InferType.DEEPGROW
    description = "Rad-VLSM interactive lesion segmentation from foreground/background clicks and an optional ROI box"

    def prompts(self, data: dict[str, Any], image: LoadedImage) -> dict[str, Any]:
        """``foreground``/``background`` clicks and ``roi`` -> points, point labels and box.

        Raises:
            RadVLSMInputError: no foreground click and no ROI, or a malformed / outside prompt.
        """
        clicks = parse_clicks(data, image.size_hw)
        box = parse_roi(data.get("roi"), image.size_hw)
        if 1 not in clicks.get("point_labels", []) and box is None:
            raise RadVLSMInputError("give at least one foreground point or a roi box", "prompts")
        return {"box": box, **clicks}

    def findings(self, result: RadVLSMResult, prompts: dict[str, Any]) -> dict[str, Any]:
        """The summary (no automatic candidates) plus the prompts as the model used them."""
        return {**result.summary(), "prompts": prompts}
