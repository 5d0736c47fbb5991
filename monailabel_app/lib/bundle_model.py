"""The served Rad-VLSM predictor: built from the bundle's own ``inference.json``, weights reloaded on change.

One :class:`BundleModel` is shared by every infer task and the scoring method of the app, so an image's
embedding computed for one request is reused by the next (the predictor's embedding cache, sized by the
bundle's ``embedding_cache_size``). The
weights file is checked at each request: when ``model.pt`` appears or changes (training published new
weights) the network is rebuilt and the new weights loaded, without a server restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from lib.options import AppOptions
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.runtime import build_encoder_runtime
from radvlsm.models.weights import load_trained_weights
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger(__name__)


def weights_stamp(path: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of the weights file, None when it does not exist."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@dataclass
class _Loaded:
    predictor: RadVLSMPredictor
    stamp: tuple[int, int] | None


class BundleModel:
    """Builds, caches (one network per device) and hot-reloads the bundle's network.

    Args:
        options: the app settings (bundle folder, weights folder, ``network_def`` overrides).
    """

    def __init__(self, options: AppOptions) -> None:
        self.options = options
        self.lock = threading.RLock()
        self._loaded: dict[str, _Loaded] = {}
        self._failed_stamp: tuple[int, int] | None = None
        self._warning: str | None = None
        self._variant: str | None = None

    @property
    def weights_path(self) -> Path:
        """``model.pt`` in the weights folder."""
        return self.options.weights_path

    def bundle_config(self, name: str = "inference.json") -> ConfigParser:
        """The bundle's config file with ``bundle_root`` and the app's ``network_def`` overrides applied."""
        parser = ConfigParser()
        parser.read_config(str(self.options.bundle_path / "configs" / name))
        parser["bundle_root"] = str(self.options.bundle_path)
        for key, value in self.options.network_overrides.items():
            parser[key] = value
        return parser

    def variant(self) -> str:
        """The image-encoder variant the bundle config (with overrides) builds."""
        if self._variant is None:
            self._variant = str(self.bundle_config()["network_def"].get("variant", "litemedsam"))
        return self._variant

    def get(self, device: str) -> RadVLSMPredictor:
        """The predictor (network and embedding cache) on ``device``, rebuilt when the weights file appeared,
        changed or disappeared.

        Call it holding :attr:`lock` while the predictor is used (it holds the current image).
        """
        with self.lock:
            stamp = weights_stamp(self.weights_path)
            loaded = self._loaded.get(device)
            if loaded is not None and (loaded.stamp == stamp or stamp == self._failed_stamp):
                return loaded.predictor
            if loaded is not None:
                logger.info("weights file %s changed: reloading the network on %s", self.weights_path, device)
            self._loaded[device] = self._build(device, stamp, previous=loaded)
            return self._loaded[device].predictor

    def _build(self, device: str, stamp: tuple[int, int] | None, previous: _Loaded | None) -> _Loaded:
        started = time.perf_counter()
        config = self.bundle_config()
        network = config.get_parsed_content("network_def", instantiate=True)
        if stamp is None:
            self._warning = (
                f"no trained weights at {self.weights_path}: serving the untrained Rad-VLSM heads on the "
                f"{self.variant()} encoder and decoder; results are not meaningful until model.pt is provided"
            )
            logger.warning(self._warning)
        else:
            try:
                load_trained_weights(network, self.weights_path)
                self._warning, self._failed_stamp = None, None
            except RadVLSMInputError as exc:
                self._failed_stamp = stamp
                if previous is not None:
                    self._warning = f"{exc}; still serving the previous weights"
                    logger.error(self._warning)
                    return previous
                self._warning = f"{exc}; serving the untrained heads"
                logger.error(self._warning)
        network = network.to(torch.device(device)).eval()
        cache = EmbeddingCache.for_encoder(
            network.image_encoder,
            max_items=int(config.get_parsed_content("embedding_cache_size")),
            # on disk: shared with the scoring/training subprocesses and kept over restarts
            cache_dir=self.options.embedding_cache_dir or config.get_parsed_content("embedding_cache_dir") or None,
        )
        runtime = build_encoder_runtime(
            network.image_encoder,
            config.get_parsed_content("encoder_runtime"),
            config.get_parsed_content("encoder_export_dir"),
            None,
            config.get_parsed_content("encoder_precision"),
        )
        logger.info("Rad-VLSM network ready on %s in %.1f s", device, time.perf_counter() - started)
        predictor = RadVLSMPredictor(network, cache, runtime)
        return _Loaded(predictor, stamp if self._failed_stamp != stamp else None)

    def status(self, device: str) -> dict[str, Any]:
        """The weights served on ``device``, for result JSON: path, whether trained, their stamp, any warning."""
        loaded = self._loaded.get(device)
        stamp = None if loaded is None else loaded.stamp
        return {
            "weights": str(self.weights_path),
            "trained": stamp is not None,
            "modified": None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stamp[0] / 1e9)),
            "stamp": None if stamp is None else f"{stamp[0]}-{stamp[1]}",
            "variant": self.variant(),
            "warning": self._warning,
        }
