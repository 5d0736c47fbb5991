"""Load on the MONAI Label app with the shipped weights: bursts of concurrent infer requests on 127.0.0.1.

Usage::

    python benchmarks/load.py --images 8 --bursts 8 32 64 --workers 1 2 4 [--conf infer_threads 2] [--out load.json]
    python benchmarks/load.py --images 8 --bursts 8 32 --workers 1 --conf infer_offload false   # MONAI Label's route

Each setting starts ``--workers`` servers as the README documents them (``monailabel start_server --app
monailabel_app``), sharing a folder of phantom images and ``bundles/radvlsm_breast_us/models/model.pt``,
behind a least-connections TCP proxy (``tests/monailabel_app/replicas.py``; one server needs no proxy but gets
one too, so every setting is measured the same way). First each distinct request (one automatic request per
image; ``--clicks`` adds a click at the image centre) is sent once, one at a time, through the proxy: those
answers are the reference and their times the one-by-one latency. Then each burst is released at once (one
thread per request): throughput of the answered requests, their p50/p95/max latency, the number of 503
answers (queue full), the servers' peak resident memory (all processes), the p95 and longest ``GET /info/``
through the proxy during the burst and the answers that differ from the reference are printed as JSON.
Each burst starts on servers whose embedding cache may hold the images (as in an annotation session).
``--render OUT.json ...`` prints the table of ``docs/benchmarks.md`` from earlier ``--out`` files.
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

from label_server import parse_infer  # noqa: E402
from load_client import Job, distinct_jobs, fire  # noqa: E402
from replicas import running_replicas  # noqa: E402

from radvlsm.data.phantom import generate_phantom_dataset  # noqa: E402

logger = logging.getLogger("benchmarks.load")
WEIGHTS_DIR = ROOT / "bundles" / "radvlsm_breast_us" / "models"


def check(outcomes: list, reference: dict) -> int:
    """How many answered requests differ from the one-by-one reference (mask or malignancy probability);
    refusals (503) are counted apart, any other status is wrong."""
    wrong = 0
    for outcome in outcomes:
        if outcome.status == 503:
            continue
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


def run_setting(studies: Path, work: Path, workers: int, conf: dict, jobs: list[Job], args) -> dict:
    """Start ``workers`` replicas, take the one-by-one reference, fire every burst; the figures."""
    started = time.perf_counter()
    conf = {"device": "cpu", "skip_trainers": "true", **conf}
    work.mkdir(parents=True)
    (work / "models").symlink_to(WEIGHTS_DIR)  # the shared, published weights
    with running_replicas(studies, work, conf, workers) as (proxy, servers):
        startup_s = time.perf_counter() - started
        reference, one_by_one = {}, []
        for job in jobs:
            t0 = time.perf_counter()
            response = proxy_infer(proxy.url, job, args.timeout)
            reference[job.key] = parse_infer(response)
            one_by_one.append(time.perf_counter() - t0)
        served = reference[jobs[0].key][0]["model"]
        assert served["trained"], f"the shipped weights were not served: {served['warning']}"
        setting = {
            "workers": workers,
            "conf": conf,
            "startup_s": round(startup_s, 1),
            "one_by_one_median_s": round(statistics.median(one_by_one), 3),
            "bursts": [],
        }
        for n in args.bursts:
            burst = [jobs[i % len(jobs)] for i in range(n)]
            outcomes, summary = fire(proxy.url, burst, args.timeout, [s.process.pid for s in servers])
            summary["wrong_answers"] = check(outcomes, reference)
            summary["served_by_replica"] = list(proxy.served)
            setting["bursts"].append(summary)
            logger.info("workers %d, burst %d: %s", workers, n, summary)
    return setting


def proxy_infer(url: str, job: Job, timeout_s: float):
    """One infer request (the load client's form) through the proxy."""
    import requests

    return requests.post(
        f"{url}/infer/{job.model}",
        params={"image": job.image},
        data={"params": json.dumps(job.params)},
        timeout=timeout_s,
    )


def markdown(results: dict) -> str:
    """The results as the table of ``docs/benchmarks.md`` (one row per setting and burst)."""
    lines = [
        "| workers | route | burst | answered | 503 | wrong | wall (s) | throughput (req/s) | p50 (s) | p95 (s) "
        "| `/info/` p95 (s) | `/info/` max (s) | RSS before -> peak, all servers (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in results["settings"]:
        conf = setting["conf"]
        offload = str(conf.get("infer_offload", "true")).lower() != "false"
        route = (
            f"threads {conf.get('infer_threads', 2)}, queue {conf.get('infer_queue_size', 32)}"
            if offload
            else "MONAI Label's"
        )
        for b in setting["bursts"]:
            lines.append(
                f"| {setting['workers']} | {route} | {b['requests']} | {b['ok']} | {b['busy_503']} "
                f"| {b['wrong_answers']} | {b['wall_s']} | {b['throughput_rps']} | {b['p50_s']} | {b['p95_s']} "
                f"| {b['info_p95_s']} | {b['info_max_wait_s']} | {b['rss_before_mb']:.0f} -> {b['rss_peak_mb']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="phantom images in the studies folder")
    parser.add_argument("--bursts", type=int, nargs="+", default=[8, 32, 64], help="burst sizes")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="server replicas (one setting each)")
    parser.add_argument("--clicks", action="store_true", help="also a click request per image")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="--conf pair")
    parser.add_argument("--omp-threads", type=int, default=None, help="OMP_NUM_THREADS of each server")
    parser.add_argument("--timeout", type=float, default=900, help="per-request timeout, seconds")
    parser.add_argument("--out", help="write the results JSON here too")
    parser.add_argument("--render", nargs="+", metavar="JSON", help="only print the table of earlier --out files")
    args = parser.parse_args()
    if args.render:
        for path in args.render:
            print(markdown(json.loads(Path(path).read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.omp_threads:
        os.environ["OMP_NUM_THREADS"] = str(args.omp_threads)
    conf = dict(args.conf)
    results = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "images": args.images,
        "omp_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "settings": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "phantom"
        generate_phantom_dataset(data, n_images=args.images, seed=0)
        for workers in args.workers:
            studies = Path(tmp) / f"studies-{workers}"  # a fresh datastore per setting
            studies.mkdir()
            for image in sorted((data / "Images").glob("*.png")):
                (studies / image.name).write_bytes(image.read_bytes())
            jobs = [j for j in distinct_jobs(studies) if args.clicks or j.model == "radvlsm_auto"]
            results["settings"].append(run_setting(studies, Path(tmp) / f"work-{workers}", workers, conf, jobs, args))
    print(json.dumps(results, indent=2))
    print(markdown(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
