"""The method's parts and baselines side by side on one split, one image-encoder pass per image.

For every test image (at its original size, as the bundle's evaluation):

- ``automatic``: the full prompt-free pipeline (candidates, reliability, MCRA, and the box re-decoding of the
  fused mask when ``box_refine`` is on);
- ``mcra_fused``: MCRA's fused mask itself (the same as ``automatic`` without ``box_refine``);
- ``single_best_candidate``: the most reliable candidate's mask alone (no MCRA fusion);
- ``oracle_best_candidate``: the candidate with the best Dice against the truth, picked in hindsight: the ceiling
  that a perfect ranking of the same candidates would reach (not a method; it reads the truth);
- ``map_candidates_only`` / ``learned_candidates_only``: the most reliable of the response map's candidates /
  of the learned-prompt candidates alone;
- ``focus_map_only``: the focusing head's probability thresholded at 0.5 (no SAM);
- ``truth_box`` / ``centre_click``: the model's decoder with the truth box / one click at the lesion centre;
- ``centre_click_on_lesion``: the same click used only to pick the automatic mask's lesion under it, whose box the
  user-box decoder re-decodes (the click's box taken from the automatic mask instead of the response map's
  candidates; the ``centre_click`` route when the click is on no lesion of the automatic mask): what the
  predictor does with a click when ``network_def`` ``click_selects_lesion`` is on (``centre_click`` is the model's
  own click route, ``RadVLSM.forward_prompted``);
- ``litemedsam_truth_box``: the pretrained LiteMedSAM decoder with the truth box, no fine-tuning (the same as
  ``truth_box`` when the model ships no tuned decoder);
- diagnosis AUC with and without the radiomics fusion;
- per scanner (the item's ``device``): Dice of every row and the AUC, with 95% bootstrap intervals.

Usage::

    python benchmarks/ablations.py --dataset_dir ../shared/data/bus-bra --split_file SPLIT.json \
        --model_path model.pt --out ablations.json [--split test] [--limit N] [--cache_dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from radvlsm.config import build_network
from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.data.image_io import read_image_2d
from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.bundle import prepare_dataset, prepare_splits
from radvlsm.engine.evaluation import truth_prompts
from radvlsm.engine.metrics import diagnosis_metrics, segmentation_metrics
from radvlsm.models.candidates import lesion_box_at
from radvlsm.models.weights import load_trained_weights
from radvlsm.predictor import RadVLSMPredictor, validate_prompts

logger = logging.getLogger("benchmarks.ablations")

SEGMENTATION_ROWS = (
    "automatic",
    "mcra_fused",
    "single_best_candidate",
    "oracle_best_candidate",
    "map_candidates_only",
    "learned_candidates_only",
    "focus_map_only",
    "truth_box",
    "centre_click",
    "centre_click_on_lesion",
    "litemedsam_truth_box",
)


def trained_model(model_path: str, cache_dir: str | None = None, **overrides) -> RadVLSMPredictor:
    """A predictor over the bundle's network (its ``inference.json``) with ``model_path`` loaded, in eval mode;
    image embeddings mirrored to ``cache_dir`` (shared with the bundle's evaluation: same keys)."""
    model = load_trained_weights(build_network(**overrides), model_path).eval()
    return RadVLSMPredictor(model, EmbeddingCache.for_encoder(model.image_encoder, max_items=8, cache_dir=cache_dir))


def split_items(dataset_dir: str, split_file: str, split: str = "test", limit: int = 0) -> list[dict]:
    """The items of one split of the split file (the first ``limit`` only when it is not 0)."""
    items = prepare_splits(prepare_dataset(dataset_dir, validate=False), split, split_file, None)[split]
    return items[:limit] if limit else items


def _dice(mask_model: torch.Tensor, geometry: LongestSideGeometry, truth: np.ndarray) -> float:
    """Dice at the original size of a ``(S, S)`` model-frame probability or binary map (threshold 0.5)."""
    mask = geometry.model_to_original(mask_model.float()).cpu().numpy() > 0.5
    return float(segmentation_metrics(mask, truth)["dice"][0])


@torch.no_grad()  # not inference_mode: weights built inside it could not be fingerprinted (caches)
def run(
    dataset_dir: str,
    split_file: str,
    model_path: str,
    split: str = "test",
    limit: int = 0,
    cache_dir: str | None = None,
    **overrides,
) -> dict:
    """Evaluate every row on the split; returns means over images and the diagnosis AUCs.

    ``overrides`` change ``network_def`` keys of the bundle (e.g. ``variant="tiny"`` in tests).
    """
    predictor = trained_model(model_path, cache_dir, **overrides)
    model = predictor.model
    untuned = build_network(**overrides).eval()  # the pretrained LiteMedSAM decoder, untouched
    items = split_items(dataset_dir, split_file, split, limit)
    rows: dict[str, list[float]] = {name: [] for name in SEGMENTATION_ROWS}
    probs_fused, probs_visual, labels, devices = [], [], [], []
    started = time.perf_counter()
    for i, item in enumerate(items):
        image = read_image_2d(item["image"])
        truth = read_image_2d(item["label"]) > 0
        predictor.set_image(image)
        geometry, x, emb = predictor.geometry, predictor.input_image, predictor.features
        out = model(embeddings=emb, content_size=geometry.resized_size)
        rows["automatic"].append(_dice(out.mask_prob[0, 0], geometry, truth))
        rows["mcra_fused"].append(_dice(out.fused.mask_prob[0, 0], geometry, truth))
        reliability = out.reliability_logits.masked_fill(~out.candidates.valid, float("-inf"))
        best = int(reliability[0].argmax())
        rows["single_best_candidate"].append(_dice(torch.sigmoid(out.mask_logits[0, best, 0]), geometry, truth))
        valid = out.candidates.valid[0].nonzero().flatten().tolist()
        rows["oracle_best_candidate"].append(
            max(_dice(torch.sigmoid(out.mask_logits[0, k, 0]), geometry, truth) for k in valid) if valid else 0.0
        )
        n_map = out.point_mask_logits.shape[1]
        for name, part in (("map_candidates_only", slice(0, n_map)), ("learned_candidates_only", slice(n_map, None))):
            if reliability[0, part].numel():
                k = int(reliability[0, part].argmax()) + part.start
                rows[name].append(_dice(torch.sigmoid(out.mask_logits[0, k, 0]), geometry, truth))
        size = out.cam.shape[-2:]
        focus_prob = torch.nn.functional.interpolate(torch.sigmoid(out.cam_logits), size=size, mode="bilinear")
        rows["focus_map_only"].append(_dice(focus_prob[0, 0], geometry, truth))
        binary = (out.mask_prob > 0.5).float()
        final_logits, _ = model.fuse_radiomics(x, binary, out.fused.region_emb, out.fused.diag_logits)
        probs_fused.append(float(torch.softmax(final_logits, -1)[0, 1]))
        probs_visual.append(float(torch.softmax(out.fused.diag_logits, -1)[0, 1]))
        labels.append(int(item.get("diagnosis", 0)))
        devices.append(str(item.get("device") or "unknown"))
        box, click = truth_prompts(truth)
        if box is not None:
            p_box = validate_prompts(geometry, None, None, box, None)
            p_click = validate_prompts(geometry, click, [1], None, None)
            logits, *_ = model.forward_prompted(emb, boxes=p_box["box"])
            rows["truth_box"].append(_dice(torch.sigmoid(logits[0, 0]), geometry, truth))
            logits, *_ = model.forward_prompted(emb, points=p_click["points"], point_labels=p_click["point_labels"])
            rows["centre_click"].append(_dice(torch.sigmoid(logits[0, 0]), geometry, truth))
            lesion = lesion_box_at(out.mask_prob[0, 0], p_click["points"][0, 0])
            if lesion is not None:
                logits, *_ = model.forward_prompted(emb, boxes=lesion[None].to(emb.dtype))
            rows["centre_click_on_lesion"].append(_dice(torch.sigmoid(logits[0, 0]), geometry, truth))
            logits, *_ = untuned.forward_prompted(emb, boxes=p_box["box"])
            rows["litemedsam_truth_box"].append(_dice(torch.sigmoid(logits[0, 0]), geometry, truth))
        if (i + 1) % 25 == 0 or i + 1 == len(items):
            logger.info(
                "%d/%d images (%.2f s/image): automatic Dice %.3f, truth box %.3f",
                i + 1,
                len(items),
                (time.perf_counter() - started) / (i + 1),
                np.mean(rows["automatic"]),
                np.mean(rows["truth_box"]) if rows["truth_box"] else float("nan"),
            )
    y = np.asarray(labels)
    fused = diagnosis_metrics(np.asarray(probs_fused), y)
    visual = diagnosis_metrics(np.asarray(probs_visual), y)
    per_image = {name: np.asarray(v) for name, v in rows.items() if len(v) == len(items)}
    return {
        "n_images": len(items),
        "split": split,
        "model_path": str(model_path),
        "dice": {name: float(np.mean(v)) if v else float("nan") for name, v in rows.items()},
        "auc_with_radiomics": fused["auc"],
        "auc_visual_only": visual["auc"],
        "accuracy_with_radiomics": fused["accuracy"],
        "accuracy_visual_only": visual["accuracy"],
        "sensitivity_with_radiomics": fused["sensitivity"],
        "specificity_with_radiomics": fused["specificity"],
        "intervals": intervals(per_image, np.asarray(probs_fused), y),
        "per_scanner": {
            device: {
                "n_images": int(sel.sum()),
                **intervals({k: v[sel] for k, v in per_image.items()}, np.asarray(probs_fused)[sel], y[sel]),
            }
            for device in sorted(set(devices))
            for sel in [np.asarray(devices) == device]
        },
    }


def _auc(prob: np.ndarray, y: np.ndarray) -> float:
    """MONAI's ROC AUC; NaN when the images hold one class only (e.g. a bootstrap sample of a small scanner)."""
    if not 0 < int(y.sum()) < len(y):
        return float("nan")
    return float(compute_roc_auc(torch.as_tensor(prob), torch.as_tensor(y)))


def intervals(rows: dict[str, np.ndarray], prob: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Means of per-image Dice rows and the AUC, each with a 95% percentile bootstrap interval over images."""
    rng = np.random.default_rng(seed)
    n = len(y)
    idx = rng.integers(0, n, size=(n_boot, n)) if n else np.zeros((0, 0), int)
    out: dict[str, dict] = {}
    for name, values in rows.items():
        boots = values[idx].mean(1) if n else np.array([np.nan])
        out[f"dice_{name}"] = {"mean": float(values.mean()) if n else float("nan"), "ci95": _ci(boots)}
    aucs = np.array([_auc(prob[i], y[i]) for i in idx]) if n else np.array([np.nan])
    out["auc"] = {"mean": _auc(prob, y), "ci95": _ci(aucs)}
    return out


def _ci(values: np.ndarray) -> list[float]:
    values = values[np.isfinite(values)]
    return (
        [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else [float("nan")] * 2
    )


def split_benchmark_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every split benchmark takes (data, split, weights, output, embedding cache, threads)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split_file", required=True)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--cache_dir", default=None, help="keep image embeddings on disk for reruns")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser


def start(args: argparse.Namespace) -> None:
    """Logging and torch threads as the parsed arguments ask."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)


def main() -> None:
    args = split_benchmark_parser(__doc__.splitlines()[0]).parse_args()
    start(args)
    summary = run(args.dataset_dir, args.split_file, args.model_path, args.split, args.limit, args.cache_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    logger.info("written %s: %s", args.out, json.dumps(summary))


if __name__ == "__main__":
    main()
