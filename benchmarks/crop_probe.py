"""Lesion-centred crop evidence: does a closer look at the predicted lesion add to the shipped diagnosis features?

The shipped diagnosis reads the frozen encoder's embedding of the whole frame, pooled in the predicted mask
(``region_emb``), beside the radiomics of that mask. A lesion fills a small part of the 16 x 16 grid, so this
probe also encodes a crop of the original image around the predicted mask's box, grown by ``margin`` times the
box's longest side, and pools the crop's embedding twice: the mean over the crop's content cells and the mean
inside the mask. For every image of the bundle's training and validation splits (``train.json`` ``splits``)
it runs the automatic pipeline once, as a user's image would go (the bundle's encoder runtime), and scores by
validation AUC, with a 95% bootstrap interval and the paired difference to the shipped fused diagnosis:

- ``shipped_visual`` / ``shipped_fused``: the model's own visual and radiomics-fused probabilities;
- ``logistic_<features>_l2_<L>``: an L2 logistic probe (``diagnosis_probe.logistic_probe``) fitted on the
  training images, for ``visual+radiomics`` (the shipped features), ``crop<m>`` and ``crop<m>+visual+radiomics``;
- ``late_crop<m>_w<a>``: ``(1 - a)`` times the shipped fused logit plus ``a`` times the logit of the ``crop<m>``
  probe at ``--late_l2``: the crop evidence added beside the shipped head without refitting it.

Validation only (this chooses; the best of many rows on 154 images is optimistic). The crop costs one more
encoder pass per image and margin.

Usage::

    python benchmarks/crop_probe.py --dataset_dir ../shared/data/bus-bra --split_file SPLIT.json \
        --model_path model.pt --out crop_probe.json [--margins 0.15 1.0] [--limit N] [--threads 2]
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
from ablations import start  # this folder is on sys.path when run as a script
from diagnosis_probe import L2_GRID, finish, logistic_probe, probe_arguments, probe_overrides, score

from radvlsm.config import bundle_parser
from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.data.image_io import read_image_2d
from radvlsm.models.weights import load_trained_weights
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger("benchmarks.crop_probe")

MIN_CROP_SIDE = 16  # pixels: a smaller crop falls back to the whole image


def crop_box(mask: np.ndarray, margin: float, min_side: int = MIN_CROP_SIDE) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` of the mask's bounding box grown by ``margin`` times its longest side, inside the image.

    Args:
        mask: ``(H, W)`` boolean mask at the original size.
        margin: growth on each side as a fraction of the box's longest side (``>= 0``).
        min_side: a crop with a side below this is refused.

    Returns:
        the crop's bounds (end-exclusive), or None for an empty mask or a crop too small to encode.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    grow = margin * max(y1 - y0, x1 - x0)
    h, w = mask.shape
    y0, y1 = max(0, int(y0 - grow)), min(h, int(np.ceil(y1 + grow)))
    x0, x1 = max(0, int(x0 - grow)), min(w, int(np.ceil(x1 + grow)))
    return (y0, y1, x0, x1) if min(y1 - y0, x1 - x0) >= min_side else None


def pooled(features: torch.Tensor, geometry: LongestSideGeometry, mask: np.ndarray) -> torch.Tensor:
    """``(2C,)``: the ``(1, C, g, g)`` embedding's mean over the cells holding image content, then its mean
    weighted by the ``(H, W)`` mask's share of each cell (the content mean again when the mask misses the grid)."""
    grid = features.shape[-1]
    size = geometry.size
    h, w = geometry.resized_size
    gh, gw = max(1, int(np.ceil(h * grid / size))), max(1, int(np.ceil(w * grid / size)))
    cells = features[0, :, :gh, :gw].float()
    content = cells.mean((1, 2))
    frame = geometry.mask_to_model(torch.as_tensor(mask, dtype=torch.float32)).reshape(1, 1, size, size)
    weight = torch.nn.functional.adaptive_avg_pool2d(frame, grid)[0, 0, :gh, :gw]
    inside = (cells * weight).sum((1, 2)) / weight.sum() if float(weight.sum()) > 0 else content
    return torch.cat([content, inside])


@torch.inference_mode()
def collect(model: torch.nn.Module, predictor: RadVLSMPredictor, items: list[dict], margins: tuple[float, ...]) -> dict:
    """Shipped features, probabilities and crop embeddings of every item (see the module docstring)."""
    rows: dict[str, list] = {"visual_emb": [], "radiomics": [], "visual": [], "fused": [], "diagnosis": []}
    rows.update({f"crop{m:g}": [] for m in margins})
    started = time.perf_counter()
    for i, item in enumerate(items):
        image = read_image_2d(item["image"])
        predictor.set_image(image)
        geometry, x, features = predictor.geometry, predictor.input_image, predictor.features
        out = model(embeddings=features, content_size=geometry.resized_size)
        fused, radiomics = model.fuse_radiomics(
            x, (out.mask_prob > 0.5).float(), out.fused.region_emb, out.fused.diag_logits
        )
        rows["visual_emb"].append(out.fused.region_emb[0].float())
        rows["radiomics"].append(radiomics[0].float())
        rows["visual"].append(float(torch.softmax(out.fused.diag_logits.float(), -1)[0, 1]))
        rows["fused"].append(float(torch.softmax(fused.float(), -1)[0, 1]))
        rows["diagnosis"].append(int(item["diagnosis"]))
        mask = geometry.model_to_original(out.mask_prob[0, 0].float()).cpu().numpy() > 0.5
        for m in margins:
            box = crop_box(mask, m)
            crop, crop_mask = (
                (image, mask)
                if box is None
                else (image[box[0] : box[1], box[2] : box[3]], mask[box[0] : box[1], box[2] : box[3]])
            )
            predictor.set_image(crop)
            rows[f"crop{m:g}"].append(pooled(predictor.features, predictor.geometry, crop_mask))
        if (i + 1) % 50 == 0 or i + 1 == len(items):
            logger.info("%d/%d images (%.2f s/image)", i + 1, len(items), (time.perf_counter() - started) / (i + 1))
    out = {k: torch.stack(v).numpy() for k, v in rows.items() if v and isinstance(v[0], torch.Tensor)}
    out.update({k: np.asarray(rows[k]) for k in ("visual", "fused", "diagnosis")})
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def run(
    bundle_root: str,
    model_path: str,
    overrides: dict,
    margins: tuple[float, ...] = (0.15, 1.0),
    l2_grid: tuple[float, ...] = L2_GRID,
    late_l2: float = 0.1,
    late_weights: tuple[float, ...] = (0.2, 0.3, 0.5),
    limit: int = 0,
) -> dict:
    """Every row of the module docstring on the bundle's training and validation splits."""
    parser = bundle_parser(bundle_root, "train.json", overrides)
    model = load_trained_weights(parser.get_parsed_content("network"), model_path).eval()
    if model.radiomics is None or model.standardizer is None:
        raise ValueError("the model has no radiomics fusion; this probe compares against it")
    predictor = RadVLSMPredictor(model, encoder_runtime=parser.get_parsed_content("image_encoder_runtime"))
    splits = parser.get_parsed_content("splits")
    pick = (lambda items: items[:limit]) if limit else (lambda items: items)
    train = collect(model, predictor, pick(splits["training"]), margins)
    val = collect(model, predictor, pick(splits["validation"]), margins)
    y_train, y_val = train["diagnosis"], val["diagnosis"]
    standardizer = copy.deepcopy(model.standardizer).fit(torch.as_tensor(train["radiomics"]))
    with torch.no_grad():
        radiomics = tuple(standardizer(torch.as_tensor(s["radiomics"])).numpy() for s in (train, val))
    shipped = (train["visual_emb"], val["visual_emb"])
    shipped = tuple(np.hstack(pair) for pair in zip(shipped, radiomics, strict=True))
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "shipped_visual": (train["visual"], val["visual"]),
        "shipped_fused": (train["fused"], val["fused"]),
    }
    features = {"visual+radiomics": shipped}
    for m in margins:
        crop = (train[f"crop{m:g}"], val[f"crop{m:g}"])
        features[f"crop{m:g}"] = crop
        features[f"crop{m:g}+visual+radiomics"] = tuple(np.hstack(pair) for pair in zip(crop, shipped, strict=True))
    for name, (x_train, x_val) in features.items():
        for l2 in l2_grid:
            rows[f"logistic_{name}_l2_{l2:g}"] = logistic_probe(x_train, y_train, x_val, l2)
    for m in margins:
        x_train, x_val = features[f"crop{m:g}"]
        p_train, p_val = logistic_probe(x_train, y_train, x_val, late_l2)
        for a in late_weights:
            rows[f"late_crop{m:g}_w{a:g}"] = tuple(
                1 / (1 + np.exp(-((1 - a) * _logit(f) + a * _logit(c))))
                for f, c in ((train["fused"], p_train), (val["fused"], p_val))
            )
    summary = {
        "model_path": str(model_path),
        "n_train": len(y_train),
        "n_validation": len(y_val),
        "margins": list(margins),
        "late_l2": late_l2,
        "rows": score(rows, y_train, y_val),
    }
    return summary


def main() -> None:
    parser = probe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.15, 1.0])
    parser.add_argument("--limit", type=int, default=0, help="first N images of each split only (0: all)")
    args = parser.parse_args()
    start(args)
    overrides = probe_overrides(args, "crop_probe_run")
    finish(run(args.bundle_root, args.model_path, overrides, margins=tuple(args.margins), limit=args.limit), args.out)


if __name__ == "__main__":
    main()
