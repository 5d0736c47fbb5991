"""Batch inference over a folder or datalist of images: masks at each image's size plus a JSON per image."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from radvlsm.data import image_io
from radvlsm.data.image_io import FLAT_SUFFIXES, read_image_2d
from radvlsm.errors import RadVLSMInputError
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger(__name__)


def list_images(source: str | Path) -> list[Path]:
    """Image files of a folder (sorted), or the ``image`` entries of a datalist JSON."""
    path = Path(source)
    if path.is_dir():
        files = image_io.list_images(path)
    elif path.suffix.lower() == ".json" and path.is_file():
        data = json.loads(path.read_text())
        entries = data if isinstance(data, list) else next(iter(v for v in data.values() if isinstance(v, list)), [])
        files = [(path.parent / (e["image"] if isinstance(e, dict) else e)).resolve() for e in entries]
    else:
        raise RadVLSMInputError("not a folder of images or a datalist JSON", str(path))
    if not files:
        raise RadVLSMInputError(f"no images ({', '.join(FLAT_SUFFIXES)}) found", str(path))
    return files


def predict_images(predictor: RadVLSMPredictor, source: str | Path, output_dir: str | Path) -> dict:
    """Run the automatic pipeline on every image and write ``<stem>_mask.png`` and ``<stem>.json``.

    Unreadable images are skipped, counted and listed in ``summary.json``; nothing stops the run.

    Args:
        predictor: a :class:`RadVLSMPredictor` (the bundle's ``predictor``).
        source: a folder of images or a datalist JSON.
        output_dir: where the masks and JSON files go.

    Returns:
        the summary: counts, failures, and each image's diagnosis.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictor.model.eval()
    files = list_images(source)
    results, failures = {}, {}
    for i, file in enumerate(files, 1):
        try:
            predictor.set_image(read_image_2d(file))
            result = predictor.predict()
        except RadVLSMInputError as exc:
            failures[str(file)] = str(exc)
            logger.warning("skipped %s", exc)
            continue
        Image.fromarray((result.mask * 255).astype(np.uint8)).save(out / f"{file.stem}_mask.png")
        summary = {"image": str(file), **result.summary()}
        (out / f"{file.stem}.json").write_text(json.dumps(summary, indent=2))
        results[file.name] = {
            "diagnosis": summary["diagnosis"],
            "malignancy_probability": summary["malignancy_probability"],
        }
        logger.info(
            "%d/%d %s: %s (p=%.3f)", i, len(files), file.name, summary["diagnosis"], summary["malignancy_probability"]
        )
    report = {"n_images": len(files), "n_done": len(results), "failures": failures, "results": results}
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    return report


class MaskOutput(nn.Module):
    """Tensor-in, tensor-out view of the automatic pipeline: the fused lesion-mask probability.

    :class:`RadVLSM` returns a dataclass; tools that expect a network mapping an image batch to one tensor
    (MONAI's ``verify_net_in_out``, TorchScript-style exporters) call this instead. It holds no weights
    of its own (its state dict is the model's under ``model.``).

    Args:
        model: the :class:`radvlsm.models.radvlsm.RadVLSM`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S, S)`` model-frame images in [0, 1] -> ``(B, 1, S, S)`` automatic lesion probability."""
        return self.model(images=images).mask_prob
