"""CPU speed of the automatic pipeline by part, and of an interactive click with the embedding cached.

Usage::

    python benchmarks/speed.py --images 5 --threads 2 [--weights model.pt] [--out docs/speed.json]

Times are medians over phantom images (made on the fly) after one warm-up, on ``--threads`` torch threads.
Peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from radvlsm.config import build_network
from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.data.phantom import generate_phantom_image
from radvlsm.data.transforms import minmax_normalize
from radvlsm.models.weights import load_trained_weights

logger = logging.getLogger("benchmarks.speed")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    model = build_network().eval()  # the bundle's architecture, which model.pt fits
    if args.weights:
        load_trained_weights(model, args.weights)
    rng = np.random.default_rng(0)
    names = ("encoder", "focus_candidates", "decoder", "cues_reliability_mcra", "radiomics", "total_automatic")
    parts: dict[str, list[float]] = {k: [] for k in (*names, "click_cached", "region_box_cached")}
    with torch.inference_mode():
        for i in range(args.images + 1):
            image, mask, _ = generate_phantom_image(rng, "malignant" if i % 2 else "benign", (300, 360))
            geometry = LongestSideGeometry(image.shape, model.image_size)
            x = geometry.image_to_model(minmax_normalize(image))[None]
            emb, t_enc = timed(model.encode_image, x)
            cam_logits, t_focus = timed(model.focus_logits, emb)
            cam = F.interpolate(torch.sigmoid(cam_logits), size=(256, 256), mode="bilinear", align_corners=False)
            cands, t_cand = timed(model.candidate_generator, cam)
            _, t_dec1 = timed(model.mask_decoder, emb, boxes=cands.boxes)
            _, t_dec2 = timed(model.mask_decoder, emb, points=cands.points, point_labels=cands.point_labels)
            out, t_full_heads = timed(model.forward, embeddings=emb, content_size=geometry.resized_size)
            binary = (out.fused.mask_prob > 0.5).float()
            _, t_rad = timed(model.fuse_radiomics, x, binary, out.fused.region_emb, out.fused.diag_logits)
            total = t_enc + t_full_heads + t_rad  # the automatic pipeline: encoder, all heads, radiomics fusion
            ys, xs = np.nonzero(mask)
            click = [[float(xs.mean()), float(ys.mean())]]
            model.predict(image)  # fills the embedding cache for this image
            _, t_click = timed(model.predict, image, points=click)
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            _, t_region = timed(model.predict_region, image, box=box)  # region recognition, cached embedding
            if i == 0:
                continue  # warm-up
            parts["encoder"].append(t_enc)
            parts["focus_candidates"].append(t_focus + t_cand)
            parts["decoder"].append(t_dec1 + t_dec2)
            parts["cues_reliability_mcra"].append(max(0.0, t_full_heads - t_focus - t_cand - t_dec1 - t_dec2))
            parts["radiomics"].append(t_rad)
            parts["total_automatic"].append(total)
            parts["click_cached"].append(t_click)
            parts["region_box_cached"].append(t_region)
    result = {k: round(statistics.median(v), 1) for k, v in parts.items()}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["threads"] = args.threads
    result["images"] = args.images
    logger.info(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
