"""CPU speed of the automatic pipeline by part and of a click, against plain LiteMedSAM's eager encoder.

Usage::

    python benchmarks/speed.py --images 5 --threads 2 [--weights model.pt] [--server] [--out speed.json]

One process, one thread count, the same phantom images (made on the fly, 300 x 360): for each image, in
turn, the **reference** (the plain eager LiteMedSAM TinyViT encoder on the model-frame image), the encoder
in every installed runtime, the whole automatic pipeline (``RadVLSM.predict`` on an image no cache has
seen, as the bundle builds it: ``encoder_runtime`` from ``inference.json``), timed by part, and two clicks
with the embedding cached (the first on the image also finds the response-map candidates; the second reuses
them; both find the automatic result, which ``click_selects_lesion`` reads, kept), and the first click again
with the automatic result forgotten (``click_without_automatic_result``: a click on an image the automatic
pipeline has not run on, embedding cached). Medians after one warm-up image; every time is also given as a
ratio to the reference's median.

``--server`` then starts ``monailabel start_server --app monailabel_app`` (the shipped weights, CPU,
``--conf torch_threads``, scoring at start-up off so each automatic request meets a new image) and times,
per image and interleaved with the reference encoder in this process, the round trip of an automatic
request and of two clicks (``radvlsm_interactive``), as a client sees them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import radvlsm.models.radvlsm as radvlsm_module
from radvlsm.config import bundle_parser
from radvlsm.data.phantom import generate_phantom_image
from radvlsm.data.transforms import ToModelFrame
from radvlsm.models.encoders.image_encoder import build_image_encoder
from radvlsm.models.encoders.runtime import EncoderRuntime, available_runtimes
from radvlsm.predictor import RadVLSMPredictor

logger = logging.getLogger("benchmarks.speed")
ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "bundles" / "radvlsm_breast_us" / "models" / "model.pt"
PARTS = (
    "preprocessing",
    "encoder",
    "focus_candidates",
    "decoder",
    "cues_reliability_mcra_result",
    "radiomics",
)


def timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    """``fn(*args, **kwargs)`` and its wall time in ms."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - start) * 1000


class PartTimer:
    """Wraps callables so that their time adds to a named part while :meth:`active` is on."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)

    def wrap(self, part: str, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            out, ms = timed(fn, *args, **kwargs)
            self.ms[part] += ms
            return out

        return run


@contextmanager
def timing_parts(predictor: RadVLSMPredictor, timer: PartTimer):
    """Time the automatic pipeline's parts inside ``set_image`` + ``predict`` (restored afterwards)."""
    model = predictor.model
    saved = (
        predictor.input_cache.get_or_compute,
        predictor.embedding_cache.get_or_compute,
        model.candidate_generator,
        radvlsm_module.decode_candidates,
        model.fuse_radiomics,
    )
    predictor.input_cache.get_or_compute = timer.wrap("preprocessing", saved[0])
    predictor.embedding_cache.get_or_compute = timer.wrap("encoder", saved[1])
    focus = model.focus_logits
    model.focus_logits = timer.wrap("focus_candidates", focus)
    model.candidate_generator = timer.wrap("focus_candidates", saved[2])
    radvlsm_module.decode_candidates = timer.wrap("decoder", saved[3])
    model.fuse_radiomics = timer.wrap("radiomics", saved[4])
    try:
        yield
    finally:
        del predictor.input_cache.get_or_compute, predictor.embedding_cache.get_or_compute, model.focus_logits
        model.candidate_generator = saved[2]
        radvlsm_module.decode_candidates = saved[3]
        del model.fuse_radiomics


def model_input(image: np.ndarray, size: int = 256) -> torch.Tensor:
    """The ``(1, 1, S, S)`` model-frame input of ``image``."""
    return ToModelFrame(size)(image)[None]


def bundle_predictor(weights: str, runtime: str | None) -> RadVLSMPredictor:
    """The bundle's ``predictor`` as ``inference.json`` builds it (network, weights, embedding cache, encoder
    runtime), with ``weights`` and, when given, ``encoder_runtime`` replaced."""
    overrides = {"model_path": str(Path(weights).resolve()), "device": torch.device("cpu")}
    if runtime:
        overrides["encoder_runtime"] = runtime
    return bundle_parser(overrides=overrides).get_parsed_content("predictor")


def run_image(predictor: RadVLSMPredictor, image: np.ndarray, **prompts) -> float:
    """ms of one request on ``image``: ``set_image`` (cached when seen) and ``predict``."""
    start = time.perf_counter()
    predictor.set_image(image)
    predictor.predict(**prompts)
    return (time.perf_counter() - start) * 1000


def phantom(i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image ``i`` of the benchmark (benign and malignant in turn) and its lesion mask."""
    image, mask, _ = generate_phantom_image(rng, "malignant" if i % 2 else "benign", (300, 360))
    return image, mask


def clicks(mask: np.ndarray) -> list[list[list[float]]]:
    """Two clicks inside the lesion: its centroid, then a point a quarter of the way to its edge."""
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    return [[[cx, cy]], [[0.75 * cx + 0.25 * float(xs.max()), cy]]]


def library_run(args: argparse.Namespace) -> dict:
    """Reference encoder, runtimes, automatic pipeline by part and clicks, in one loop over the images."""
    predictor = bundle_predictor(args.weights, args.runtime)
    reference = build_image_encoder("litemedsam").eval()  # plain LiteMedSAM encoder, eager torch
    runtimes = {
        name: EncoderRuntime(reference, name, precision="f32") for name in available_runtimes() if name != "torch"
    }
    if "openvino" in runtimes:
        runtimes["openvino_bf16"] = EncoderRuntime(reference, "openvino", precision="bf16")
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for i in range(args.images + 1):
            image, mask = phantom(i, rng)
            x = model_input(image)
            _, t_ref = timed(reference, x)
            runtime_ms = {name: timed(run, x)[1] for name, run in runtimes.items()}
            timer = PartTimer()
            with timing_parts(predictor, timer):
                t_auto = run_image(predictor, image)
            predictor.predict()  # untimed: the automatic result kept for the clicks, under the unwrapped model's key
            (c1, c2) = clicks(mask)
            t_click1 = run_image(predictor, image, points=c1)
            t_click2 = run_image(predictor, image, points=c2)
            predictor.model.lesion_cache.clear()  # a click on an image the automatic pipeline has not seen
            t_click3 = run_image(predictor, image, points=c1)
            if i == 0:
                continue  # warm-up (sessions compiled, lazy imports done)
            times["reference_encoder"].append(t_ref)
            for name, ms in runtime_ms.items():
                times[f"encoder_{name}"].append(ms)
            for part in ("preprocessing", "encoder", "focus_candidates", "decoder", "radiomics"):
                times[part].append(timer.ms[part])
            times["cues_reliability_mcra_result"].append(t_auto - sum(timer.ms.values()))
            times["total_automatic"].append(t_auto)
            times["click_first"].append(t_click1)
            times["click_cached"].append(t_click2)
            times["click_without_automatic_result"].append(t_click3)
    medians = {k: round(statistics.median(v), 1) for k, v in times.items()}
    ref = medians["reference_encoder"]
    return {
        "encoder_runtime": predictor.encoder_runtime.backend if predictor.encoder_runtime else "torch",
        "median_ms": medians,
        "ratio_to_reference_encoder": {k: round(v / ref, 3) for k, v in medians.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def server_run(args: argparse.Namespace) -> dict:
    """Automatic request and clicks through MONAI Label, each image interleaved with the reference encoder."""
    sys.path.insert(0, str(ROOT / "tests" / "monailabel_app"))
    from label_server import parse_infer, running_server
    from PIL import Image

    reference = build_image_encoder("litemedsam").eval()
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        items = []
        for i in range(args.images + 1):
            image, mask = phantom(i, rng)
            Image.fromarray(image.astype(np.uint8)).save(studies / f"speed_{i:02d}.png")
            items.append((f"speed_{i:02d}", image, mask))
        conf = {
            "model_dir": str(Path(args.weights).resolve().parent),
            "device": "cpu",
            "skip_trainers": "true",
            "torch_threads": str(args.threads),
        }
        env = {"OMP_NUM_THREADS": str(args.threads), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
        started = time.perf_counter()
        with running_server(studies, Path(tmp), conf, env=env) as server, torch.inference_mode():
            startup_s = time.perf_counter() - started
            for i, (name, image, mask) in enumerate(items):
                x = model_input(image)
                _, t_ref = timed(reference, x)
                response, t_auto = timed(server.infer, "radvlsm_auto", name)
                result, _ = parse_infer(response)
                assert not result["embedding_cached"], "the automatic request found a cached embedding"
                infer_s = result["latencies"]["infer"]
                c1, c2 = clicks(mask)
                r1, t_click1 = timed(server.infer, "radvlsm_interactive", name, {"foreground": c1})
                r2, t_click2 = timed(server.infer, "radvlsm_interactive", name, {"foreground": c2})
                assert parse_infer(r2)[0]["embedding_cached"], "the click did not reuse the embedding"
                parse_infer(r1)
                if i == 0:
                    continue
                times["reference_encoder"].append(t_ref)
                times["auto_round_trip"].append(t_auto)
                times["auto_server_inferer"].append(infer_s * 1000)
                times["click_first_round_trip"].append(t_click1)
                times["click_cached_round_trip"].append(t_click2)
    medians = {k: round(statistics.median(v), 1) for k, v in times.items()}
    ref = medians["reference_encoder"]
    return {
        "server_startup_s": round(startup_s, 1),
        "median_ms": medians,
        "ratio_to_reference_encoder": {k: round(v / ref, 3) for k, v in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--runtime", default=None, help="encoder_runtime (default: the bundle's inference.json)")
    parser.add_argument("--server", action="store_true", help="also time requests through MONAI Label")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "images": args.images, "cpu_count": os.cpu_count()}
    result["library"] = library_run(args)
    if args.server:
        result["server"] = server_run(args)
    logger.info(json.dumps(result, indent=2))
    lib = result["library"]["ratio_to_reference_encoder"]
    logger.info("automatic pipeline / reference encoder: %.3f", lib["total_automatic"])
    if args.server:
        logger.info(
            "through MONAI Label: automatic %.3f x the reference encoder, click %.1f ms round trip",
            result["server"]["ratio_to_reference_encoder"]["auto_round_trip"],
            result["server"]["median_ms"]["click_cached_round_trip"],
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
