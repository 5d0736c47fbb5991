"""Exported encoder vs eager torch on real images: automatic Dice, diagnosis AUC and output differences.

Usage::

    python benchmarks/runtime_parity.py --dataset_dir ../shared/data/bus-bra \
        --split_file bundles/radvlsm_breast_us/configs/busbra_split.json [--split test] [--limit 60] \
        [--runtimes torch openvino onnxruntime openvino:bf16] [--out parity.json]

For each image of the split (the first ``--limit``), the bundle's predictor (``inference.json``, shipped
``model.pt``) runs the automatic pipeline once per runtime on the same embedding-free start, so every
runtime sees the same images in the same process. Reported per runtime: mean automatic Dice against the
truth mask, malignancy AUC, and against the ``torch`` run the largest embedding and probability-map
differences, the fraction of mask pixels that differ and the largest malignancy-probability difference.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from ablations import split_items  # this folder is on sys.path when run as a script

from radvlsm.config import bundle_parser
from radvlsm.engine.evaluation import read_gray
from radvlsm.engine.metrics import diagnosis_metrics, segmentation_metrics
from radvlsm.models.encoders.runtime import build_encoder_runtime
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger("benchmarks.runtime_parity")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split_file", default=str(ROOT / "bundles/radvlsm_breast_us/configs/busbra_split.json"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="first N images of the split (0: all)")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "openvino", "onnxruntime", "openvino:bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    network = bundle_parser(overrides={"device": torch.device("cpu")}).get_parsed_content("network")
    predictors = {}
    for spec in args.runtimes:
        name, _, precision = spec.partition(":")
        runtime = build_encoder_runtime(network.image_encoder, name, None, None, precision or "f32")
        predictors[spec] = RadVLSMPredictor(network, None, runtime)  # no embedding cache: each runtime encodes
    items = split_items(args.dataset_dir, args.split_file, args.split, args.limit)
    dice = {k: [] for k in predictors}
    probs = {k: [] for k in predictors}
    diffs = {k: {"embedding": 0.0, "probability_map": 0.0, "mask_pixels": 0.0, "malignancy": 0.0} for k in predictors}
    labels = []
    started = time.perf_counter()
    for n, item in enumerate(items, 1):
        image, truth = read_gray(item["image"]), read_gray(item["label"]) > 0
        labels.append(int(item["diagnosis"]))
        results = {}
        for spec, predictor in predictors.items():
            predictor.set_image(image)
            results[spec] = (predictor.features.clone(), predictor.predict())
            r = results[spec][1]
            dice[spec].append(float(segmentation_metrics(r.mask, truth)["dice"][0]))
            probs[spec].append(r.malignancy_probability)
        ref_features, ref = results[args.runtimes[0]]
        for spec, (features, r) in results.items():
            d = diffs[spec]
            d["embedding"] = max(d["embedding"], float((features - ref_features).abs().max()))
            d["probability_map"] = max(d["probability_map"], float(np.abs(r.probability - ref.probability).max()))
            d["mask_pixels"] = max(d["mask_pixels"], float((r.mask != ref.mask).mean()))
            d["malignancy"] = max(d["malignancy"], abs(r.malignancy_probability - ref.malignancy_probability))
        if n % 10 == 0:
            logger.info("%d/%d images (%.1f s/image)", n, len(items), (time.perf_counter() - started) / n)
    y = np.asarray(labels)
    summary = {
        "images": len(items),
        "split": args.split,
        "reference": args.runtimes[0],
        "runtimes": {
            spec: {
                "dice": round(float(np.mean(dice[spec])), 4),
                "auc": round(float(diagnosis_metrics(np.asarray(probs[spec]), y)["auc"]), 4),
                "max_abs_diff_vs_reference": {k: round(v, 6) for k, v in diffs[spec].items()},
            }
            for spec in predictors
        },
    }
    logger.info(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
