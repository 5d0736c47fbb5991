"""MONAI Label app serving the Rad-VLSM breast-ultrasound bundle (``bundles/radvlsm_breast_us``) in place.

Run::

    monailabel start_server --app monailabel_app --studies DIR --conf models radvlsm

Tasks: ``radvlsm_auto`` (segmentation with the diagnosis in its JSON), ``radvlsm_interactive``
(deepgrow: clicks and ROI), ``radvlsm_region`` (region recognition), trainer ``radvlsm``, scoring and
strategy ``radvlsm_reliability`` (plus ``random`` and ``first``). See ``lib/options.py`` for ``--conf`` keys.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import monailabel
from lib import monailabel_fixes
from lib.configs import CONFIGS
from lib.datastores import dicomweb_datastore, local_datastore
from lib.monailabel_fixes.request_checks import check_infer_request
from lib.options import AppOptions, selected_models
from lib.slicer_labels import is_segment_name
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

logger = logging.getLogger(__name__)


BACKGROUND_NICE = 10


def background_task() -> bool:
    """Whether this process is one of MONAI Label's background tasks (``python -m monailabel.interfaces.utils.app``:
    the start-up scoring over every unlabeled image, training), not the server answering requests."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", "") == "monailabel.interfaces.utils.app"


class RadVLSMApp(MONAILabelApp):
    """The app: model configs from ``--conf models``, local or DICOMweb datastore, 4xx for bad requests,
    infer requests in worker threads behind a bounded queue (503 beyond it).

    Args:
        app_dir: this folder.
        studies: a folder of 2D images, or a DICOMweb URL.
        conf: ``--conf`` pairs (see :mod:`lib.options`).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        if background_task():  # scoring/training subprocess: yield the CPU to the server's requests, no warm-up
            os.nice(BACKGROUND_NICE)
            conf = {**conf, "preload": "false"}
        self.options = AppOptions.from_conf(app_dir, conf)
        self.models: dict[str, Any] = {}
        for name in selected_models(conf):
            config = CONFIGS[name]()
            config.init(name, os.path.join(app_dir, "model"), conf, None, app_dir=app_dir)
            self.models[name] = config
        logger.info("models: %s", list(self.models))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"MONAILabel - Rad-VLSM breast ultrasound ({monailabel.__version__})",
            description="Rad-VLSM lesion segmentation, interactive segmentation and diagnosis for 2D breast ultrasound",
            version=monailabel.__version__,
        )
        # 422 handlers; infer and scoring off the event loop with a bounded queue (see lib/monailabel_fixes)
        options = self.options
        self.infer_queue = monailabel_fixes.install(
            options.infer_threads, options.infer_queue_size, options.infer_offload
        )

    def init_datastore(self) -> Datastore:
        """A local image folder, or DICOMweb (e.g. Orthanc, series with ``Modality=US``) when ``--studies`` is a URL."""
        if self.studies.startswith(("http://", "https://")):
            self.studies = self.studies.rstrip("/").strip()
            # final labels become DICOM SEG through highdicom (lib.dicom_seg): no dcmqi download needed
            return dicomweb_datastore(self.studies, self.options.search_filter)
        return local_datastore(self.studies)

    def init_infers(self) -> dict[str, InferTask]:
        """Every model config's infer tasks."""
        infers: dict[str, InferTask] = {}
        for config in self.models.values():
            infers.update(config.infer())
        logger.info("infer tasks: %s", list(infers))
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        """One trainer per model config (none with ``--conf skip_trainers true``)."""
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        return {name: config.trainer() for name, config in self.models.items()}

    def init_strategies(self) -> dict[str, Strategy]:
        """``random``, ``first`` and each model config's strategies."""
        strategies: dict[str, Strategy] = {"random": Random(), "first": First()}
        for config in self.models.values():
            strategies.update(config.strategy() or {})
        return strategies

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """Each model config's scoring methods (run at start-up and after training when auto-update is on)."""
        methods: dict[str, ScoringMethod] = {}
        for config in self.models.values():
            methods.update(config.scoring_method() or {})
        return methods

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, with 404 for an unknown model or image and 422 for unsafe names or paths
        (:func:`lib.monailabel_fixes.request_checks.check_infer_request`; the studies folder and the session
        store are the folders an image path may lie in).

        Raises:
            HTTPException: 404 naming the unknown model (and the available ones) or image; 422 for an image
                ID or path that could reach outside the datastore.
        """
        folders = [] if self.studies.startswith(("http://", "https://")) else [self.studies]
        if self.sessions() is not None:  # images uploaded to a session (3D Slicer) live in the session store
            folders.append(self.sessions().store_path)
        label = request.get("label")
        if isinstance(label, str) and label and is_segment_name(label):  # 3D Slicer sends the segment's name
            request = {**request, "label": None, "label_name": label}  # with clicks: a name, not a file
        check_infer_request(request, list(self._infers), folders, datastore or self.datastore(), self.studies)
        return super().infer(request, datastore)
