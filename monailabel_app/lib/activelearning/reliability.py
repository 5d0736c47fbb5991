"""Active learning strategy ``radvlsm_reliability``: the least reliable unlabeled image first.

Order: images not handed out by this strategy in the last ``reset_seconds`` (so two annotators do not
get the same image), then scored before unscored, then the lowest ``radvlsm_reliability``, then the
highest ``radvlsm_uncertainty``; images that could not be scored come last.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.scoring.reliability import RELIABILITY, SCORE_ERROR, UNCERTAINTY

logger = logging.getLogger(__name__)


class LeastReliable(Strategy):
    """Hands out the unlabeled image the automatic model is least sure of.

    Args:
        reset_seconds: an image handed out this recently goes behind the others.
    """

    def __init__(self, reset_seconds: int = 3600) -> None:
        super().__init__("Least reliable automatic prediction first (run the radvlsm_reliability scoring)")
        self.reset_seconds = reset_seconds

    def rank(self, image_id: str, info: dict[str, Any], strategy: str, now: float) -> tuple:
        """Sort key of one image (smallest first)."""
        served = (info.get("strategy") or {}).get(strategy, {}).get("ts", 0)
        reliability, uncertainty = info.get(RELIABILITY), info.get(UNCERTAINTY)
        return (
            now - served < self.reset_seconds,
            info.get(SCORE_ERROR) is not None,
            reliability is None,
            reliability if reliability is not None else 0.0,
            -(uncertainty or 0.0),
            image_id,
        )

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """The next image: ``{"id": ..., "radvlsm_reliability": ..., "radvlsm_uncertainty": ...}`` or None."""
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy, now = request.get("strategy", "radvlsm_reliability"), time.time()
        infos = {i: datastore.get_image_info(i) or {} for i in images}
        chosen = min(images, key=lambda i: self.rank(i, infos[i], strategy, now))
        if infos[chosen].get(RELIABILITY) is None:
            logger.info("no reliability score for %s yet: run POST /scoring/radvlsm_reliability", chosen)
        logger.info("%s: selected %s (reliability %s)", strategy, chosen, infos[chosen].get(RELIABILITY))
        return {"id": chosen, RELIABILITY: infos[chosen].get(RELIABILITY), UNCERTAINTY: infos[chosen].get(UNCERTAINTY)}
