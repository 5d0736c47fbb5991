"""The app's settings, from MONAI Label's ``--conf key value`` pairs.

Keys (all optional):

- ``models``: ``radvlsm`` or ``all`` (the only model config of this app).
- ``bundle``: the bundle folder (default ``<app>/../bundles/radvlsm_breast_us``, served in place).
- ``model_dir``: where ``model.pt`` is read and training publishes it (default ``<bundle>/models``).
- ``work_dir``: training runs and their datalists (default ``<app>/model/radvlsm``).
- ``device``: ``cpu``, ``cuda``, ``cuda:1`` ... (default: a GPU when there is one, else the CPU).
- ``preload``: ``true`` (default) builds and warms the network at start-up (one automatic request and one click
  on a synthetic image, so the exported encoder is built and compiled then); ``false`` at the first request.
- ``embedding_cache_dir``: image embeddings on disk, shared by the server and its scoring/training subprocesses
  (default ``<work_dir>/embeddings``; ``none`` keeps them in memory only).
- ``torch_threads``: intra-op threads of torch and the encoder runtime (default: ``OMP_NUM_THREADS``, else
  torch's default); with ``infer_threads`` requests at once, ``torch_threads x infer_threads`` should not exceed
  the cores given.
- ``network_def#<arg>``: any bundle ``network_def`` argument, e.g. ``network_def#variant tiny``
  (values are parsed as JSON when they can be: ``32`` is a number, ``true`` a boolean).
- ``dicomweb_search_filter``: JSON QIDO filter for a DICOMweb datastore (default ``{"Modality": "US"}``).
- ``infer_threads``: worker threads running infer requests off the event loop (default
  :data:`DEFAULT_INFER_THREADS`).
- ``infer_queue_size``: admitted infer requests that may wait for a thread; more are answered 503 with
  ``Retry-After`` (default :data:`DEFAULT_INFER_QUEUE_SIZE`).
- ``infer_offload``: ``false`` keeps MONAI Label's own infer and scoring routes (blocking; for comparison).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

MODEL_NAMES = ("radvlsm",)
BUNDLE_NAME = "radvlsm_breast_us"
TRUE_WORDS = ("1", "true", "yes", "on")
DEFAULT_INFER_THREADS = 2
DEFAULT_INFER_QUEUE_SIZE = 32


def parse_value(text: str) -> Any:
    """A ``--conf`` value as JSON when it is JSON (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return text


def selected_models(conf: dict[str, str]) -> list[str]:
    """The model configs named by ``--conf models`` (default all).

    Raises:
        RadVLSMInputError: for a name this app does not have (the message lists the names it has).
    """
    names = [n.strip() for n in str(conf.get("models", "all")).split(",") if n.strip()]
    unknown = [n for n in names if n != "all" and n not in MODEL_NAMES]
    if unknown or not names:
        raise RadVLSMInputError(
            f"unknown model(s) {unknown or names}; this app has: all, {', '.join(MODEL_NAMES)}", "--conf models"
        )
    return list(MODEL_NAMES) if "all" in names else names


@dataclass
class AppOptions:
    """Resolved app settings.

    Args:
        app_dir: the app folder.
        bundle_path: the bundle folder (with ``configs/inference.json`` and ``configs/train.json``).
        model_dir: folder of ``model.pt``.
        work_dir: folder for training runs.
        device: requested device, or None for automatic.
        preload: build and warm the network at start-up.
        embedding_cache_dir: folder of cached image embeddings (None: memory only).
        torch_threads: intra-op threads of torch and the encoder runtime per request (None: as the environment
            gives).
        network_overrides: bundle ids (``network_def#...``) and values applied to every config.
        search_filter: DICOMweb QIDO search filter.
        infer_threads: infer worker threads.
        infer_queue_size: infer requests that may wait for a thread.
        infer_offload: replace MONAI Label's blocking infer and scoring routes.
    """

    app_dir: Path
    bundle_path: Path
    model_dir: Path
    work_dir: Path
    device: str | None = None
    preload: bool = True
    torch_threads: int | None = None
    embedding_cache_dir: Path | None = None
    network_overrides: dict[str, Any] = field(default_factory=dict)
    search_filter: dict[str, Any] = field(default_factory=lambda: {"Modality": "US"})
    infer_threads: int = DEFAULT_INFER_THREADS
    infer_queue_size: int = DEFAULT_INFER_QUEUE_SIZE
    infer_offload: bool = True

    @property
    def weights_path(self) -> Path:
        """The served weights: ``<model_dir>/model.pt``."""
        return self.model_dir / "model.pt"

    @classmethod
    def from_conf(cls, app_dir: str | Path, conf: dict[str, str]) -> AppOptions:
        """Resolve the settings.

        Args:
            app_dir: the app folder.
            conf: MONAI Label's ``--conf`` pairs.

        Raises:
            RadVLSMInputError: the bundle folder has no ``configs/inference.json``, a bad filter, or a thread
                or queue count that is not a whole number (at least 1 thread, 0 queued).
        """
        app = Path(app_dir).resolve()
        bundle = Path(conf.get("bundle") or app.parent / "bundles" / BUNDLE_NAME).expanduser().resolve()
        if not (bundle / "configs" / "inference.json").is_file():
            raise RadVLSMInputError(
                "not a bundle folder (no configs/inference.json); set --conf bundle DIR", str(bundle)
            )
        overrides = {k: parse_value(v) for k, v in conf.items() if k.startswith("network_def#")}
        search_filter = parse_value(conf.get("dicomweb_search_filter", '{"Modality": "US"}'))
        if not isinstance(search_filter, dict):
            raise RadVLSMInputError('must be a JSON object, e.g. {"Modality": "US"}', "dicomweb_search_filter")
        device = str(conf.get("device") or "").strip() or None
        work_dir = Path(conf.get("work_dir") or app / "model" / "radvlsm").expanduser().resolve()
        cache = str(conf.get("embedding_cache_dir") or work_dir / "embeddings").strip()
        infer_threads = _count(conf, "infer_threads", DEFAULT_INFER_THREADS, 1)
        queue_size = _count(conf, "infer_queue_size", DEFAULT_INFER_QUEUE_SIZE, 0)
        return cls(
            app_dir=app,
            bundle_path=bundle,
            model_dir=Path(conf.get("model_dir") or bundle / "models").expanduser().resolve(),
            work_dir=work_dir,
            embedding_cache_dir=None if cache.lower() in ("", "none") else Path(cache).expanduser().resolve(),
            device=None if device in (None, "auto") else device,
            preload=str(conf.get("preload", "true")).lower() in TRUE_WORDS,
            torch_threads=_count(conf, "torch_threads", 0, 0) or None,
            network_overrides=overrides,
            search_filter=search_filter,
            infer_threads=infer_threads,
            infer_queue_size=queue_size,
            infer_offload=str(conf.get("infer_offload", "true")).lower() in TRUE_WORDS,
        )


def _count(conf: dict[str, str], key: str, default: int, minimum: int) -> int:
    """A whole-number ``--conf`` value of at least ``minimum``.

    Raises:
        RadVLSMInputError: not a whole number, or below ``minimum``.
    """
    value = parse_value(str(conf.get(key, default)))
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RadVLSMInputError(f"must be a whole number >= {minimum}, got {conf.get(key)!r}", key)
    return value
