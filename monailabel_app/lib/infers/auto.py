"""``radvlsm_auto``: the prompt-free pipeline, as a segmentation task with the diagnosis in its JSON."""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.images import LoadedImage
from lib.infers.base import RadVLSMInferTask
from radvlsm.models.result import RadVLSMResult


class RadVLSMAuto(RadVLSMInferTask):
    """Automatic lesion mask plus malignancy probability, diagnosis, candidates with reliability, radiomics.

    OHIF and Slicer show segmentation tasks but not separate classification tasks, so the diagnosis
    travels in this task's result JSON.
    """

    default_name = "radvlsm_auto"
    infer_type = InferType.SEGMENTATION
    description = (
        "Rad-VLSM automatic breast-ultrasound lesion segmentation with benign/malignant diagnosis "
        "(malignancy probability, candidate reliability and radiomics in the result JSON)"
    )

    def prompts(self, data: dict[str, Any], image: LoadedImage) -> dict[str, Any]:
        """No prompt: the model finds the lesion itself."""
        return {}

    def findings(self, result: RadVLSMResult, prompts: dict[str, Any]) -> dict[str, Any]:
        """The full summary: diagnosis, probabilities, candidate boxes with reliability, radiomics."""
        return result.summary()
