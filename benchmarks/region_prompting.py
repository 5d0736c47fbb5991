"""Region-level recognition with feature-level region prompts (MedP-CLIP style), against the unprompted model.

For every image of a split (one image-encoder pass each, shared by every row):

- region diagnosis AUC (the diagnosis head on the prompted region embedding) with the truth box, the truth
  mask and one click at the lesion centre; the region's zero-shot AUC (class prompts) with the same prompts;
- the same with the SAM path (the truth box through the fine-tuned mask decoder, then the diagnosis head on
  the predicted mask), the region task's method before the feature-level prompt existed;
- the unprompted global diagnosis (the automatic pipeline, visual evidence and with radiomics);
- the check asked by MedP-CLIP's critics: image-level recognition with a small region prompt supplied (one
  click on the lesion, or one click at a random place) against the unprompted model, both for the image-level
  zero-shot scores (global embedding vs class prompts) and for the automatic pipeline run on the prompted
  features.

AUCs come with 95% bootstrap intervals (images resampled, 1000 times).

Usage::

    python benchmarks/region_prompting.py --dataset_dir ../shared/data/bus-bra \
        --split_file bundles/radvlsm_breast_us/configs/busbra_split.json \
        --model_path bundles/radvlsm_breast_us/models/model.pt --out region.json [--cache_dir DIR] [--limit N]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from ablations import (  # this folder is on sys.path when run as a script
    split_benchmark_parser,
    split_items,
    start,
    trained_model,
)

from radvlsm.data.image_io import read_image_2d
from radvlsm.engine.evaluation import truth_prompts
from radvlsm.engine.metrics import diagnosis_metrics
from radvlsm.predictor import validate_prompts

logger = logging.getLogger("benchmarks.region_prompting")


def bootstrap_auc(prob: np.ndarray, labels: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the AUC over ``n`` image resamples (resamples with one class are skipped)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            values.append(diagnosis_metrics(prob[idx], labels[idx])["auc"])
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def malignant(logits: torch.Tensor) -> float:
    """Softmax probability of class 1 of ``(1, 2)`` logits."""
    return float(torch.softmax(logits, -1)[0, 1])


@torch.no_grad()  # not inference_mode: weights built inside it could not be fingerprinted (caches)
def run(
    dataset_dir: str,
    split_file: str,
    model_path: str,
    split: str = "test",
    limit: int = 0,
    cache_dir: str | None = None,
    automatic: bool = True,
    seed: int = 0,
) -> dict:
    """Every row's malignancy probabilities on the split, then AUCs with intervals."""
    predictor = trained_model(model_path, cache_dir)
    model = predictor.model
    items = split_items(dataset_dir, split_file, split, limit)
    rng = np.random.default_rng(seed)
    classes = [[c] for c in model.class_prompts]
    probs: dict[str, list[float]] = {}
    labels: list[int] = []
    started = time.perf_counter()

    def add(name: str, value: float) -> None:
        probs.setdefault(name, []).append(value)

    for i, item in enumerate(items):
        image = read_image_2d(item["image"])
        truth = read_image_2d(item["label"]) > 0
        box, click = truth_prompts(truth)
        if box is None:
            logger.warning("%s: empty truth mask, skipped", item["image"])
            continue
        predictor.set_image(image)
        geometry, x, emb = predictor.geometry, predictor.input_image, predictor.features
        h, w = image.shape
        random_click = [[float(rng.uniform(0, w)), float(rng.uniform(0, h))]]
        prompts = {
            "truth_box": validate_prompts(geometry, None, None, box, None),
            "truth_mask": validate_prompts(geometry, None, None, None, truth.astype(np.uint8)),
            "centre_click": validate_prompts(geometry, click, [1], None, None),
            "random_click": validate_prompts(geometry, random_click, [1], None, None),
        }
        maps = {
            name: model.region_map(points=p.get("points"), point_labels=p.get("point_labels"), boxes=p.get("box"),
                                   masks=p.get("mask"))
            for name, p in prompts.items()
        }  # fmt: skip
        for name in ("truth_box", "truth_mask", "centre_click"):
            out = model.recognize_region(emb, maps[name])
            add(f"region_{name}", malignant(out.diag_logits))
            add(f"region_zero_shot_{name}", float(model.zero_shot(out.region_emb, classes)[0, 1]))
        _, sam_logits, _, _ = model.forward_prompted(emb, boxes=prompts["truth_box"]["box"])
        add("sam_path_truth_box", malignant(sam_logits))
        add("image_zero_shot_unprompted", float(model.zero_shot(emb.mean(dim=(2, 3)), classes)[0, 1]))
        for name in ("centre_click", "random_click"):
            features = model.prompted_features(emb, maps[name])
            add(f"image_zero_shot_{name}", float(model.zero_shot(features.mean(dim=(2, 3)), classes)[0, 1]))
        if automatic:
            for name, features in (
                ("unprompted", emb),
                ("centre_click", model.prompted_features(emb, maps["centre_click"])),
            ):
                out = model(embeddings=features, content_size=geometry.resized_size)
                fused, _ = model.fuse_radiomics(
                    x, (out.mask_prob > 0.5).float(), out.fused.region_emb, out.fused.diag_logits
                )
                add(f"automatic_visual_{name}", malignant(out.fused.diag_logits))
                add(f"automatic_with_radiomics_{name}", malignant(fused))
        labels.append(int(item.get("diagnosis", 0)))
        if (i + 1) % 25 == 0 or i + 1 == len(items):
            logger.info("%d/%d images (%.2f s/image)", i + 1, len(items), (time.perf_counter() - started) / (i + 1))
    y = np.asarray(labels)
    rows = {}
    for name, values in probs.items():
        p = np.asarray(values)
        metrics = diagnosis_metrics(p, y)
        low, high = bootstrap_auc(p, y)
        rows[name] = {"auc": metrics["auc"], "auc_95ci": [low, high], "accuracy": metrics["accuracy"]}
    return {
        "n_images": len(labels),
        "n_malignant": int(y.sum()),
        "split": split,
        "model_path": str(model_path),
        "region_prompt_trained": bool(model.region_prompt.to_features.weight.abs().sum() > 0),
        "rows": rows,
    }


def main() -> None:
    parser = split_benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--no_automatic", action="store_true", help="skip the automatic pipeline rows (slow)")
    args = parser.parse_args()
    start(args)
    summary = run(
        args.dataset_dir,
        args.split_file,
        args.model_path,
        args.split,
        args.limit,
        args.cache_dir,
        automatic=not args.no_automatic,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    for name, row in summary["rows"].items():
        logger.info("%-36s AUC %.3f [%.3f, %.3f]", name, row["auc"], *row["auc_95ci"])


if __name__ == "__main__":
    main()
