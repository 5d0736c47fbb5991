"""Evaluation of a trained model on a list of images, at each image's original size.

For every image: the automatic (prompt-free) pipeline, the truth box as prompt, and one click at the
lesion centre. Writes ``per_image.csv``, ``metrics.json`` (means over images, per scanner too) and
overlay pictures for a sample of images.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage

from radvlsm.data.image_io import read_image_2d
from radvlsm.engine.metrics import diagnosis_metrics, segmentation_metrics
from radvlsm.engine.overlay import save_overlay
from radvlsm.errors import RadVLSMInputError
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger(__name__)


def truth_prompts(mask: np.ndarray) -> tuple[list[float] | None, list[list[float]] | None]:
    """The truth box ``[x1, y1, x2, y2]`` and one click at the lesion centre (inside the mask)."""
    if not mask.any():
        return None, None
    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    labels, n = ndimage.label(mask)
    largest = 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    dist = ndimage.distance_transform_edt(labels == largest)
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return box, [[float(cx) + 0.5, float(cy) + 0.5]]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate(
    predictor: RadVLSMPredictor,
    items: list[dict],
    output_dir: str | Path,
    n_overlays: int = 8,
    prompted: bool = True,
) -> dict:
    """Evaluate ``model`` on ``items`` and write the results to ``output_dir``.

    Args:
        predictor: a :class:`RadVLSMPredictor` over the model in eval mode (each image is embedded once for
            the automatic, box and click predictions).
        items: datalist items with ``image``, ``label``, ``diagnosis`` (and ``id``, ``device``).
        output_dir: folder for ``metrics.json``, ``per_image.csv`` and ``overlays/``.
        n_overlays: number of overlay pictures (the first images, in order).
        prompted: also evaluate with the truth box and with one centre click.

    Returns:
        the summary written to ``metrics.json``.
    """
    out = Path(output_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    predictor.model.eval()
    rows: list[dict] = []
    started = time.perf_counter()
    for i, item in enumerate(items):
        image = read_image_2d(item["image"])
        truth = read_image_2d(item["label"]) > 0
        if truth.shape != image.shape:
            raise RadVLSMInputError(f"mask {truth.shape} and image {image.shape} differ in size", item["label"])
        t0 = time.perf_counter()
        predictor.set_image(image)
        result = predictor.predict()
        ms_auto = (time.perf_counter() - t0) * 1000
        seg = segmentation_metrics(result.mask, truth)
        row = {
            "id": item.get("id", Path(item["image"]).stem),
            "device": item.get("device") or "unknown",
            "diagnosis": int(item.get("diagnosis", 0)),
            "prob_malignant": result.malignancy_probability,
            "prob_malignant_visual": result.visual_malignancy_probability,
            "dice": float(seg["dice"][0]),
            "iou": float(seg["iou"][0]),
            "hd95": float(seg["hd95"][0]),
            "n_candidates": len(result.candidates),
            "ms_automatic": ms_auto,
        }
        if prompted:
            box, click = truth_prompts(truth)
            if box is not None:
                row["dice_box"] = float(segmentation_metrics(predictor.predict(box=box).mask, truth)["dice"][0])
                row["dice_click"] = float(segmentation_metrics(predictor.predict(points=click).mask, truth)["dice"][0])
        rows.append(row)
        if i < n_overlays:
            save_overlay(out / "overlays" / f"{row['id']}.png", image, truth, result)
        if (i + 1) % 10 == 0 or i + 1 == len(items):
            rate = (time.perf_counter() - started) / (i + 1)
            logger.info(
                "evaluated %d/%d images (%.2f s/image), mean Dice so far %.3f",
                i + 1,
                len(items),
                rate,
                _mean([r["dice"] for r in rows]),
            )
    summary = summarise(rows)
    _write_csv(out / "per_image.csv", rows)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    logger.info("metrics written to %s: %s", out / "metrics.json", {k: summary[k] for k in ("n_images", "dice", "auc")})
    return summary


def summarise(rows: list[dict]) -> dict:
    """Means over images (segmentation) and diagnosis metrics, overall and per scanner."""

    def block(subset: list[dict]) -> dict:
        diag = diagnosis_metrics(
            np.asarray([r["prob_malignant"] for r in subset]), np.asarray([r["diagnosis"] for r in subset])
        )
        visual = diagnosis_metrics(
            np.asarray([r["prob_malignant_visual"] for r in subset]), np.asarray([r["diagnosis"] for r in subset])
        )
        return {
            "n_images": len(subset),
            "dice": _mean([r["dice"] for r in subset]),
            "iou": _mean([r["iou"] for r in subset]),
            "hd95": _mean([r["hd95"] for r in subset]),
            "dice_box": _mean([r.get("dice_box") for r in subset]),
            "dice_click": _mean([r.get("dice_click") for r in subset]),
            "auc": diag["auc"],
            "accuracy": diag["accuracy"],
            "sensitivity": diag["sensitivity"],
            "specificity": diag["specificity"],
            "auc_visual_only": visual["auc"],
            "ms_automatic_mean": _mean([r["ms_automatic"] for r in subset]),
        }

    summary = block(rows)
    by_device: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_device[r["device"]].append(r)
    summary["by_scanner"] = {name: block(subset) for name, subset in sorted(by_device.items())}
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


INT_COLUMNS = ("diagnosis", "n_candidates")
TEXT_COLUMNS = ("id", "device")


def read_per_image_csv(path: str | Path) -> list[dict]:
    """The rows of a ``per_image.csv`` written by :func:`evaluate`, with their types back (floats exactly).

    Empty cells (a prompt metric not computed for an image without a lesion) are left out of the row.
    """
    rows = []
    with Path(path).open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict = {}
            for key, text in raw.items():
                if text == "":
                    continue
                row[key] = text if key in TEXT_COLUMNS else int(text) if key in INT_COLUMNS else float(text)
            rows.append(row)
    return rows


def merge_evaluations(parts: list[str | Path], output_dir: str | Path, order: list[str]) -> dict:
    """Merge the ``per_image.csv`` of several evaluations of disjoint items into one ``metrics.json``.

    Args:
        parts: folders written by :func:`evaluate` (one per rank).
        output_dir: where the merged ``metrics.json`` and ``per_image.csv`` go.
        order: image IDs in the order a single-process run would evaluate them (the merged rows follow it,
            so the means equal that run's to the last bit).

    Returns:
        the merged summary (the keys of :func:`summarise`).

    Raises:
        RadVLSMInputError: a part is missing, or the parts do not hold exactly the images of ``order``.
    """
    rows: list[dict] = []
    for part in parts:
        csv_path = Path(part) / "per_image.csv"
        if not csv_path.is_file():
            raise RadVLSMInputError("no per_image.csv: that part of the evaluation did not finish", str(part))
        rows += read_per_image_csv(csv_path)
    position = {image_id: i for i, image_id in enumerate(order)}
    if sorted(r["id"] for r in rows) != sorted(order):
        raise RadVLSMInputError(f"the parts hold {len(rows)} images, expected the {len(order)} given", "parts")
    rows.sort(key=lambda r: position[r["id"]])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    _write_csv(out / "per_image.csv", rows)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    logger.info(
        "merged %d parts into %s: %s",
        len(parts),
        out / "metrics.json",
        {k: summary[k] for k in ("n_images", "dice", "auc")},
    )
    return summary
