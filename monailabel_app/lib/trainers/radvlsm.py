"""Fine-tuning the bundle from MONAI Label: labels with pathology and text in, new ``model.pt`` published.

A :class:`BundleTrainTask` running the bundle's own ``train.json`` (``run``) in place, with overrides:
the datastore's labels (with pathology and clinical text from each label's info) as a datalist and a
patient-grouped split, a fresh run folder under the app's work folder, the stage epochs from the
request, and the network initialised from the currently served ``model.pt`` (fine-tuning). When the
run finishes, its weights are copied atomically over the served ``model.pt``; the infer tasks notice
the new file at their next request and reload it, without a server restart.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleTrainTask

from lib.options import AppOptions
from lib.trainers.datalist import labeled_items, split_items, write_training_files
from radvlsm.atomic_files import atomic_copy
from radvlsm.config import bundle_parser
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

# keys MONAI Label's BundleTrainTask sets for its standard bundle layout; this bundle has its own
STOCK_KEYS = ("train#trainer#max_epochs", "train#dataset#data", "train#handlers", "validate#dataset#data")
VAL_SPLIT = 0.2  # fraction of the labeled patients the app holds out for validation (a client option)


def train_defaults(bundle_path: Path) -> dict[str, Any]:
    """The stage epochs clients see and a request may change, read from the bundle's ``train.json``.

    ``max_epochs`` is MONAI Label's name for the ``segment`` stage's epochs.
    """
    parser = bundle_parser(bundle_path, "train.json")
    return {
        "max_epochs": int(parser["epochs_segment"]),
        "epochs_align": int(parser["epochs_align"]),
        "epochs_fusion": int(parser["epochs_fusion"]),
        "val_split": VAL_SPLIT,
    }


def publish(source: Path, target: Path) -> Path:
    """Copy new weights (and their metrics JSON) over the served ones atomically (:func:`atomic_copy`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for src, dst in ((source.with_suffix(".json"), target.with_suffix(".json")), (source, target)):
        if src.is_file():
            atomic_copy(src, dst)
    logger.info("published %s -> %s; infer tasks load it at their next request", source, target)
    return target


class RadVLSMTrainTask(BundleTrainTask):
    """The bundle's training, fed from the datastore and publishing to the served weights.

    Args:
        options: the app settings (bundle, weights and work folders, ``network_def`` overrides).
        conf: MONAI Label's ``--conf`` pairs.
    """

    def __init__(self, options: AppOptions, conf: dict[str, str]) -> None:
        super().__init__(str(options.bundle_path), conf)
        self.options = options
        self._request: dict[str, Any] = {}
        self._run_dir: Path | None = None

    def config(self) -> dict[str, Any]:
        """Options shown by clients: the stock ones plus the bundle's stage epochs."""
        config = super().config()
        config.update(train_defaults(self.options.bundle_path))  # max_epochs: the segment stage
        config["model_filename"] = sorted(os.path.basename(p) for p in glob.glob(str(self.options.model_dir / "*.pt")))
        return config

    def stats(self) -> dict[str, Any]:
        """Metrics of the served weights (written next to ``model.pt`` by the bundle), when present."""
        metrics = self.options.weights_path.with_suffix(".json")
        try:
            return json.loads(metrics.read_text()) if metrics.is_file() else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def _fetch_datalist(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, Any]]:
        """Labeled images with pathology and clinical text (not only image and label).

        Raises:
            RadVLSMInputError: no label has a pathology.
        """
        items = labeled_items(datastore)
        if not items:
            raise RadVLSMInputError(
                'no labeled image with a pathology: save labels with params {"pathology": "benign"|"malignant"}',
                "train",
            )
        return items

    def _partition_datalist(self, datalist: list[dict], request: dict[str, Any], shuffle: bool = False) -> tuple:
        """Patient-grouped, pathology-stratified training/validation split."""
        return split_items(datalist, float(request.get("val_split", VAL_SPLIT)))

    def _load_checkpoint(self, model_pytorch: str, pretrained: bool, train_handlers: list) -> None:
        """Unused: the network is initialised from the served weights in :meth:`_update_overrides`."""

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train, then publish the run's ``model.pt`` to the served weights."""
        self._request = dict(request)
        request.setdefault("device", self.options.device or "cuda")
        defaults = train_defaults(self.options.bundle_path)
        request.setdefault("max_epochs", defaults["max_epochs"])
        request["run_id"] = request.get("run_id") or "run"
        started = time.time()
        super().__call__(request, datastore)
        produced = None if self._run_dir is None else self._run_dir / "model.pt"
        if produced is None or not produced.is_file():
            raise RuntimeError(f"training finished without writing {produced}; nothing was published")
        target = publish(produced, self.options.weights_path)
        return {"published": str(target), "run_dir": str(self._run_dir), "seconds": round(time.time() - started, 1)}

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Replace the stock overrides with this bundle's ids (in place, as BundleTrainTask expects)."""
        request = self._request
        defaults = train_defaults(self.options.bundle_path)
        stock = {k: overrides.pop(k, None) for k in STOCK_KEYS}
        train, val = stock["train#dataset#data"] or [], stock["validate#dataset#data"] or []
        run_dir = self.options.work_dir / "train" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        datalist, split = write_training_files(train, val, run_dir)
        self._run_dir = run_dir
        overrides.update(self.options.network_overrides)
        overrides.update(
            {
                "dataset_dir": str(datalist),
                "split_file": str(split),
                "output_dir": str(run_dir),
                "model_path": str(run_dir / "model.pt"),
                "epochs_align": int(request.get("epochs_align", defaults["epochs_align"])),
                "epochs_segment": int(request.get("epochs_segment", stock["train#trainer#max_epochs"] or 1)),
                "epochs_fusion": int(request.get("epochs_fusion", defaults["epochs_fusion"])),
            }
        )
        name = request.get("model_filename") or "model.pt"
        weights = self.options.model_dir / str(name[0] if isinstance(name, list) and name else name or "model.pt")
        if str(request.get("pretrained", True)).lower() not in ("false", "0") and weights.is_file():
            overrides["network"] = (
                f"$radvlsm.models.weights.load_trained_weights(@network_def, {str(weights)!r}).to(@device)"
            )
            logger.info("fine-tuning from %s", weights)
        else:
            logger.info("training from the bundle's initial weights (no %s or pretrained=false)", weights)
        logger.info("training %d images, validating %d; run folder %s", len(train), len(val), run_dir)
        return overrides
