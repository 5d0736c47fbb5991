"""The ``radvlsm`` model config: one shared network, three infer tasks, the trainer, scoring and strategy."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.others.generic import name_to_device
from PIL import Image

from lib.activelearning import LeastReliable
from lib.bundle_model import BundleModel
from lib.infers import RadVLSMAuto, RadVLSMInteractive, RadVLSMRegion
from lib.options import AppOptions
from lib.scoring import ReliabilityScoring
from lib.trainers import RadVLSMTrainTask
from radvlsm.data.phantom import generate_phantom_image

logger = logging.getLogger(__name__)


def warm_up(auto: InferTask, interactive: InferTask) -> None:
    """Run one automatic request and one click on a synthetic image through the tasks (reader, network,
    exported encoder, decoder, radiomics, writer), so the first user request pays none of their start-up."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="radvlsm-warm-") as tmp:
        image, _, _ = generate_phantom_image(np.random.default_rng(0), "benign", (96, 128))
        path = Path(tmp) / "warm.png"
        Image.fromarray(image.astype(np.uint8)).save(path)
        for task, params in ((auto, {}), (interactive, {"foreground": [[64, 48]]})):
            label, _ = task({"image": str(path), **params})
            if isinstance(label, str):
                Path(label).unlink(missing_ok=True)
    logger.info("infer tasks warmed up in %.1f s", time.perf_counter() - started)


class RadVLSMConfig(TaskConfig):
    """Tasks of the Rad-VLSM bundle, all sharing one :class:`lib.bundle_model.BundleModel`."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        """Resolve the settings and create the shared network provider.

        Args:
            name: the config's name (task names start with it).
            model_dir: the app's ``model`` folder (unused: see :class:`lib.options.AppOptions`).
            conf: MONAI Label's ``--conf`` pairs.
            planner: unused.
            **kwargs: ``app_dir`` (required).
        """
        super().init(name, model_dir, conf, planner, **kwargs)
        self.options = AppOptions.from_conf(kwargs["app_dir"], conf)
        self.model = BundleModel(self.options)
        self.labels = {"lesion": 1}
        self.bundle_path = str(self.options.bundle_path)
        logger.info("bundle %s; weights %s", self.options.bundle_path, self.options.weights_path)
        if not self.options.weights_path.is_file():
            logger.warning(
                "no %s yet: the untrained Rad-VLSM heads are served until model.pt appears (it is picked up "
                "without a restart)",
                self.options.weights_path,
            )
        if self.options.torch_threads:  # the exported encoder's runtime takes torch's thread count
            torch.set_num_threads(self.options.torch_threads)
        logger.info("torch threads: %d", torch.get_num_threads())
        if self.options.preload:
            self.model.get(name_to_device(self.options.device or "cuda"))

    def infer(self) -> dict[str, InferTask]:
        """``<name>_auto`` (segmentation), ``<name>_interactive`` (deepgrow) and ``<name>_region``."""
        tasks = {
            f"{self.name}_auto": RadVLSMAuto(self.model, f"{self.name}_auto"),
            f"{self.name}_interactive": RadVLSMInteractive(self.model, f"{self.name}_interactive"),
            f"{self.name}_region": RadVLSMRegion(self.model, f"{self.name}_region"),
        }
        if self.options.preload:
            warm_up(tasks[f"{self.name}_auto"], tasks[f"{self.name}_interactive"])
        return tasks

    def trainer(self) -> TrainTask | None:
        """The bundle's training, fed from the datastore."""
        return RadVLSMTrainTask(self.options, self.conf)

    def strategy(self) -> dict[str, Strategy]:
        """``<name>_reliability``: least reliable unlabeled image first."""
        return {f"{self.name}_reliability": LeastReliable()}

    def scoring_method(self) -> dict[str, ScoringMethod]:
        """``<name>_reliability``: stores reliability and uncertainty of unlabeled images."""
        return {f"{self.name}_reliability": ReliabilityScoring(self.model)}
