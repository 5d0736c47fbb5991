"""Scoring unlabeled images with the automatic model: reliability and uncertainty into each image's info.

Per image (stored under these keys of the image's info):

- ``radvlsm_reliability``: the reliability head's predicted mask IoU of the best automatic candidate
  (0..1; low = the model does not trust any of its own candidates).
- ``radvlsm_uncertainty``: mean binary entropy (bits, 0..1) of the fused lesion probability over the
  pixels the model gives any lesion probability (> 0.05): how fuzzy the proposed outline is.
- ``radvlsm_scored_with``: which weights scored it (images already scored by the served weights are
  skipped); ``radvlsm_score_error``: why an image could not be scored (unreadable file, 3D volume).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.utils.others.generic import name_to_device

from lib.bundle_model import BundleModel
from lib.images import load_image_2d
from radvlsm.errors import RadVLSMInputError
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger(__name__)

RELIABILITY = "radvlsm_reliability"
UNCERTAINTY = "radvlsm_uncertainty"
SCORED_WITH = "radvlsm_scored_with"
SCORE_ERROR = "radvlsm_score_error"
LESION_PROBABILITY = 0.05


@torch.inference_mode()
def score_image(predictor: RadVLSMPredictor, gray: np.ndarray) -> dict[str, float]:
    """Reliability and uncertainty of the automatic prediction on one ``(H, W)`` image."""
    predictor.set_image(gray)
    geometry = predictor.geometry
    out = predictor.model(embeddings=predictor.features, content_size=geometry.resized_size)
    valid = out.candidates.valid[0]
    reliability = torch.sigmoid(out.reliability_logits[0][valid])
    h, w = geometry.resized_size
    # MCRA's soft fused mask, not the box-re-decoded one: its entropy reflects the candidates' disagreement
    p = out.fused.mask_prob[0, 0, :h, :w].clamp(1e-6, 1 - 1e-6)
    entropy = -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    region = p > LESION_PROBABILITY
    return {
        RELIABILITY: float(reliability.max()) if reliability.numel() else 0.0,
        UNCERTAINTY: float(entropy[region].mean()) if bool(region.any()) else 0.0,
    }


class ReliabilityScoring(ScoringMethod):
    """Runs the automatic model on every unlabeled image and stores reliability and uncertainty.

    Args:
        model: the shared network provider.
        max_samples: score at most this many images per run (0: all).
    """

    def __init__(self, model: BundleModel, max_samples: int = 0) -> None:
        super().__init__("Rad-VLSM reliability and uncertainty of the automatic prediction on unlabeled images")
        self.model = model
        self.max_samples = max_samples

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Score the unlabeled images not yet scored by the served weights.

        Args:
            request: ``device``, ``max_samples``, ``force`` (rescore everything).
            datastore: the app's datastore (image infos are updated in place).

        Returns:
            counts (total, scored, skipped, failed) and the latency.
        """
        started = time.time()
        device = name_to_device(request.get("device") or self.model.options.device or "cuda")
        with self.model.lock:
            self.model.get(device)
            served = self.model.status(device)
        stamp = f"{served['variant']}:{served['stamp'] or 'untrained'}"
        images = sorted(datastore.get_unlabeled_images())
        todo = [
            i for i in images if request.get("force") or (datastore.get_image_info(i) or {}).get(SCORED_WITH) != stamp
        ]
        limit = int(request.get("max_samples", self.max_samples) or 0)
        todo = todo[:limit] if limit > 0 else todo
        failed = 0
        for image_id in todo:
            try:
                gray = load_image_2d(datastore.get_image_uri(image_id)).gray
                with self.model.lock:
                    scores = score_image(self.model.get(device), gray)
                info: dict[str, Any] = {**scores, SCORED_WITH: stamp, SCORE_ERROR: None}
            except RadVLSMInputError as exc:
                failed += 1
                logger.warning("not scored: %s", exc)
                info = {RELIABILITY: None, UNCERTAINTY: None, SCORED_WITH: stamp, SCORE_ERROR: str(exc)}
            datastore.update_image_info(image_id, info)
        summary = {
            "total": len(images),
            "scored": len(todo) - failed,
            "skipped": len(images) - len(todo),
            "failed": failed,
            "latency": round(time.time() - started, 3),
        }
        logger.info("reliability scoring: %s", summary)
        return summary
