"""Load on the MONAI Label app with the shipped weights: N concurrent infer requests on 127.0.0.1.

Usage::

    python benchmarks/load.py --images 8 --requests 32 64 [--infer-concurrency 2] [--out load.json]

Starts the server as the README documents it (``monailabel start_server --app monailabel_app``) on a
folder of phantom images, with ``bundles/radvlsm_breast_us/models/model.pt``. First each distinct request
(automatic segmentation and one click, per image) is sent once, one at a time: their answers are the
reference and their times the one-by-one latency. Then each ``--requests`` count is sent all at once (one
thread per request): every answer is checked against the reference, and the throughput, p50/p95/max
latency, the server's peak resident memory (its process group) and the longest ``GET /info/`` wait
during the burst are printed as JSON. Each burst starts on a server whose embedding cache may already
hold the images (as it would in an annotation session).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "monailabel_app"))  # the test suite's server runner and load client

from label_server import parse_infer, running_server  # noqa: E402
from load_client import distinct_jobs, fire  # noqa: E402

from radvlsm.data.phantom import generate_phantom_dataset  # noqa: E402

logger = logging.getLogger("benchmarks.load")
WEIGHTS_DIR = ROOT / "bundles" / "radvlsm_breast_us" / "models"


def check(outcomes: list, reference: dict) -> int:
    """How many answers differ from the one-by-one reference (status, mask or malignancy probability)."""
    wrong = 0
    for outcome in outcomes:
        if outcome.status != 200:
            wrong += 1
            continue
        result, label = parse_infer(outcome.response)
        ref_result, ref_label = reference[outcome.job.key]
        same = np.array_equal(label, ref_label) and np.isclose(
            result["malignancy_probability"], ref_result["malignancy_probability"], atol=1e-6
        )
        wrong += not same
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="phantom images in the studies folder")
    parser.add_argument("--requests", type=int, nargs="+", default=[32, 64], help="burst sizes")
    parser.add_argument("--timeout", type=float, default=600, help="per-request timeout, seconds")
    parser.add_argument("--infer-concurrency", type=int, default=None, help="MONAI_LABEL_INFER_CONCURRENCY")
    parser.add_argument("--out", help="write the results JSON here too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.infer_concurrency is not None:
        os.environ["MONAI_LABEL_INFER_CONCURRENCY"] = str(args.infer_concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "phantom"
        generate_phantom_dataset(data, n_images=args.images, seed=0)
        studies = Path(tmp) / "studies"
        studies.mkdir()
        for image in sorted((data / "Images").glob("*.png")):
            (studies / image.name).write_bytes(image.read_bytes())
        conf = {"model_dir": str(WEIGHTS_DIR), "device": "cpu", "skip_trainers": "true"}
        started = time.perf_counter()
        with running_server(studies, Path(tmp), conf) as server:
            startup_s = time.perf_counter() - started
            jobs = distinct_jobs(studies)
            reference, one_by_one = {}, {"radvlsm_auto": [], "radvlsm_interactive": []}
            for job in jobs:
                t0 = time.perf_counter()
                reference[job.key] = parse_infer(server.infer(job.model, job.image, job.params))
                one_by_one[job.model].append(time.perf_counter() - t0)
            served = reference[jobs[0].key][0]["model"]
            assert served["trained"], f"the shipped weights were not served: {served['warning']}"
            results = {
                "machine": f"{os.cpu_count()} CPU cores, no GPU",
                "images": args.images,
                "infer_concurrency": os.environ.get("MONAI_LABEL_INFER_CONCURRENCY", "-1 (default)"),
                "server_startup_s": round(startup_s, 1),
                "one_by_one_median_s": {k: round(statistics.median(v), 3) for k, v in one_by_one.items()},
                "bursts": [],
            }
            for n in args.requests:
                burst = [jobs[i % len(jobs)] for i in range(n)]
                outcomes, summary = fire(server.url, burst, args.timeout, server.process.pid)
                summary["wrong_answers"] = check(outcomes, reference)
                results["bursts"].append(summary)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
