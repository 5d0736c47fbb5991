"""User-box Dice on one split: the model's user-box decoder against LiteMedSAM's untouched decoder, image by image.

For every image (at its original size, as the bundle's evaluation) the truth box goes to the decoder that serves
user boxes (``RadVLSM.user_box_decoder``: the box-tuned copy when the model ships one) and to the pretrained
LiteMedSAM decoder. Reports both means, their paired difference with a 95% bootstrap interval, overall and per
scanner (the item's ``device``). Only the decoders run (no automatic pipeline), so a whole leave-one-scanner-out
test split takes minutes; give ``--cache_dir`` to reuse image embeddings.

``correction_click``: a user who corrects the box's mask with one click, as interactive-segmentation benchmarks
simulate it (:func:`radvlsm.engine.prompt_sampling.correction_click`: at the centre of the largest error region,
foreground on a miss, background on a leak). The box and that click go to the decoder that serves them
(``user_box_decoder``), to the automatic path's copy (``candidate_decoder``) and to LiteMedSAM's; each row pairs
its Dice with the same decoder's box alone (``difference`` < 0: the correction made the mask worse).

Usage::

    python benchmarks/box_prompts.py --dataset_dir ../shared/data/bus-bra --split_file SPLIT.json \
        --model_path model.pt --out box_prompts.json [--split test] [--limit N] [--cache_dir DIR]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from ablations import (  # this folder is on sys.path when run as a script
    _dice,
    split_benchmark_parser,
    split_items,
    start,
    trained_model,
)
from loso import _paired

from radvlsm.config import build_network
from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.data.image_io import read_image_2d
from radvlsm.engine.evaluation import truth_prompts
from radvlsm.engine.prompt_sampling import correction_click
from radvlsm.models.decode import decode_prompts
from radvlsm.predictor import validate_prompts

logger = logging.getLogger("benchmarks.box_prompts")


def _paired_row(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> dict:
    """Means of ``a`` and ``b`` (keyed by ``names``) and of ``a - b`` with its 95% bootstrap interval
    (``loso.py``'s paired bootstrap)."""
    if not len(a):
        return {"n_images": 0}
    p = _paired(a, b)
    return {
        "n_images": len(a),
        names[0]: p["held_out"],
        names[1]: p["in_distribution"],
        "difference": p["difference"],
        "ci95": p["difference_ci95"],
    }


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """The model's ``a`` against LiteMedSAM's ``b``, paired per image."""
    return _paired_row(a, b, ("model", "litemedsam"))


def _correction_row(refined: list[float], alone: list[float], labels: list[int]) -> dict:
    """Box + correction click against the same decoder's box alone, with the share of images it made worse."""
    a, b = np.asarray(refined), np.asarray(alone)
    row = _paired_row(a, b, ("box_and_click", "box_alone"))
    if len(a):
        row["share_worse"] = float(np.mean(a < b - 1e-6))
        row["share_foreground_clicks"] = float(np.mean(labels)) if labels else float("nan")
    return row


def _decode_dice(
    decoder: torch.nn.Module, emb: torch.Tensor, prompts: dict, geometry: LongestSideGeometry, truth: np.ndarray
) -> tuple[float, np.ndarray]:
    """Dice at the original size of one decoded prompt set, and the mask it scored."""
    logits = decode_prompts(decoder, emb, prompts["box"], prompts.get("points"), prompts.get("point_labels"))
    prob = torch.sigmoid(logits.mask_logits[0, 0, 0])
    mask = geometry.model_to_original(prob.float()).cpu().numpy() > 0.5
    return _dice(prob, geometry, truth), mask


@torch.no_grad()
def run(
    dataset_dir: str,
    split_file: str,
    model_path: str,
    split: str = "test",
    limit: int = 0,
    cache_dir: str | None = None,
    **overrides,
) -> dict:
    """Truth-box Dice of the model's user-box decoder and of LiteMedSAM's, per image; summary as described above.

    ``overrides`` change ``network_def`` keys of the bundle (e.g. ``variant="tiny"`` in tests).
    """
    predictor = trained_model(model_path, cache_dir, **overrides)
    model = predictor.model
    untuned = build_network(**overrides).eval().mask_decoder  # the pretrained LiteMedSAM decoder, untouched
    items = split_items(dataset_dir, split_file, split, limit)
    devices: list[str] = []
    decoders = {
        "user_box_decoder": model.user_box_decoder,
        "candidate_decoder": model.candidate_decoder,
        "litemedsam": untuned,
    }
    alone: dict[str, list[float]] = {k: [] for k in decoders}
    refined: dict[str, list[float]] = {k: [] for k in decoders}
    click_labels: dict[str, list[int]] = {k: [] for k in decoders}
    started = time.perf_counter()
    for i, item in enumerate(items):
        truth = read_image_2d(item["label"]) > 0
        box, _ = truth_prompts(truth)
        if box is None:
            continue
        predictor.set_image(read_image_2d(item["image"]))
        geometry, emb = predictor.geometry, predictor.features
        box_only = validate_prompts(geometry, None, None, box, None)
        for name, decoder in decoders.items():
            dice, mask = _decode_dice(decoder, emb, box_only, geometry, truth)
            click = correction_click(mask, truth)
            alone[name].append(dice)
            if click is None:  # the box's mask is right everywhere: nothing to click
                refined[name].append(dice)
                continue
            click_labels[name].append(click[1])
            with_click = validate_prompts(geometry, [click[0]], [click[1]], box, None)
            refined[name].append(_decode_dice(decoder, emb, with_click, geometry, truth)[0])
        devices.append(str(item.get("device") or "unknown"))
        if (i + 1) % 50 == 0 or i + 1 == len(items):
            logger.info(
                "%d/%d images (%.2f s/image): box Dice %.4f, LiteMedSAM %.4f",
                i + 1,
                len(items),
                (time.perf_counter() - started) / (i + 1),
                np.mean(alone["user_box_decoder"]),
                np.mean(alone["litemedsam"]),
            )
    a, b = np.asarray(alone["user_box_decoder"]), np.asarray(alone["litemedsam"])
    dev = np.asarray(devices)
    tuned = model.box_decoder is not None and any(
        not torch.equal(p, q)
        for p, q in zip(model.box_decoder.state_dict().values(), untuned.state_dict().values(), strict=True)
    )
    return {
        "split": split,
        "model_path": str(model_path),
        "box_decoder": "tuned" if tuned else "litemedsam",
        **paired(a, b),
        "per_scanner": {d: paired(a[dev == d], b[dev == d]) for d in sorted(set(devices))},
        "correction_click": {k: _correction_row(refined[k], alone[k], click_labels[k]) for k in decoders},
    }


def main() -> None:
    args = split_benchmark_parser(__doc__.splitlines()[0]).parse_args()
    start(args)
    summary = run(args.dataset_dir, args.split_file, args.model_path, args.split, args.limit, args.cache_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    logger.info("written %s: %s", args.out, json.dumps({k: v for k, v in summary.items() if k != "per_scanner"}))


if __name__ == "__main__":
    main()
