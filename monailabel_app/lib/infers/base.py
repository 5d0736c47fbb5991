"""Shared infer task: read the image, run :meth:`RadVLSMPredictor.predict` with the task's prompts, write the mask.

Each request goes through MONAI Label's :class:`BasicInferTask` pipeline (pre-transforms, inferer,
writer). The predictor comes from the app's :class:`lib.bundle_model.BundleModel` (one per device,
reloaded when ``model.pt`` changes); its embedding cache makes repeated prompts on one image cheap. The
label is written with the image's file geometry (PNG for PNG/JPEG images, NIfTI for DICOM/NIfTI ones);
the result JSON carries the task's findings, the image size, whether the embedding was cached and the
served weights. Bad input raises 422 with the problem in words.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.bundle_model import BundleModel
from lib.images import LoadedImage, label_extension, load_image_2d
from lib.monailabel_fixes.http_errors import client_errors
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.result import RadVLSMResult
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger(__name__)

LABELS = {"lesion": 1}
RESULT_EXTENSIONS = (".png", ".nii.gz", ".nii", ".nrrd", ".seg.nrrd")  # OHIF and 3D Slicer ask for NRRD


def finite_json(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None (strict JSON, as FastAPI's JSON answers need)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def result_extension(requested: Any, image_path: str) -> str:
    """The label file type: the request's ``result_extension`` when it is one of :data:`RESULT_EXTENSIONS`.

    Raises:
        RadVLSMInputError: any other requested extension (it names a file the writer creates).
    """
    if not requested:
        return label_extension(image_path)
    if requested not in RESULT_EXTENSIONS:
        raise RadVLSMInputError(f"must be one of {RESULT_EXTENSIONS}, got {requested!r}", "result_extension")
    return str(requested)


class LoadUltrasoundImaged:
    """Pre-transform: ``data["image"]`` (a file path) -> :class:`lib.images.LoadedImage`."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        """Read the image named by ``data["image"]``."""
        data["image"] = load_image_2d(str(data["image"]))
        return data


class RadVLSMInferTask(BasicInferTask):
    """Base of the app's infer tasks; a subclass sets ``default_name``, ``infer_type`` and ``description``.

    Args:
        model: the shared network provider.
        name: the task's name (prefixed to error messages); ``default_name`` when None.
        config: extra request defaults shown by clients.
    """

    default_name: str
    infer_type: InferType  # what clients offer the task for
    description: str  # shown by clients

    def __init__(self, model: BundleModel, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(
            path=str(model.weights_path),
            network=None,
            type=self.infer_type,
            labels=LABELS,
            dimension=2,
            description=self.description,
            config=config,
            load_strict=False,
        )
        self.model = model
        self.name = name or self.default_name
        if model.options.device:
            self._config["device"] = model.options.device

    def is_valid(self) -> bool:
        """Always servable: without ``model.pt`` the untrained heads are served (with a warning)."""
        return True

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Read the image (clear 422 for unreadable files and 3D volumes)."""
        return [LoadUltrasoundImaged()]

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Nothing: the inferer already returns the mask in the file's geometry."""
        return []

    @abstractmethod
    def prompts(self, data: dict[str, Any], image: LoadedImage) -> dict[str, Any]:
        """``RadVLSMPredictor.predict`` keyword arguments (``points``, ``point_labels``, ``box``, ``mask``)."""

    @abstractmethod
    def findings(self, result: RadVLSMResult, prompts: dict[str, Any]) -> dict[str, Any]:
        """The task's part of the result JSON."""

    def recognize(self, predictor: RadVLSMPredictor, prompts: dict[str, Any]) -> dict[str, Any]:
        """Further findings from the same predictor (image set) and prompts, merged over :meth:`findings`."""
        return {}

    def __call__(self, request: dict[str, Any], callbacks: dict | None = None) -> tuple[Any, dict]:
        """Run the task; bad input -> ``HTTPException`` 422 naming the task and the problem."""
        with client_errors(self.name):
            return super().__call__(request, callbacks)

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict:
        """Predict with the task's prompts; store the mask (``pred``) and the result JSON (``result``)."""
        image: LoadedImage = data["image"]
        prompts = self.prompts(data, image)
        with self.model.lock:
            predictor = self.model.get(device)
            hits = predictor.embedding_cache.hits
            predictor.set_image(image.gray)
            cached = predictor.embedding_cache.hits > hits
            result = predictor.predict(**prompts)
            extra = self.recognize(predictor, prompts)
            served = self.model.status(device)
        data["pred"] = image.to_file_geometry(result.mask)
        data["pred_meta_dict"] = {"affine": image.affine}
        data["result_extension"] = result_extension(data.get("result_extension"), image.path)
        data["result"] = finite_json(
            {
                **self.findings(result, prompts),
                **extra,
                "image_size": list(image.size_hw),
                "embedding_cached": cached,
                "model": served,
            }
        )
        logger.info("%s on %s: %s", self.name, image.path, {k: data["result"].get(k) for k in ("diagnosis",)})
        return data
