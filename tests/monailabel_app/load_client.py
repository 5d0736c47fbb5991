"""Concurrent infer requests against a running MONAI Label server, with latency and memory figures.

Used by ``test_load.py`` (tiny network) and ``benchmarks/load.py`` (shipped weights). Each job is one
``POST /infer/<model>`` sent from its own thread, all released at once; the server's resident memory
(its whole process group) is sampled meanwhile, and ``GET /info/`` is probed to show whether the server
still answers other requests while inferring. A 503 answer (the server's infer queue is full) is counted,
with its ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One infer request: task, image ID and params."""

    model: str
    image: str
    params: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable name of the request (same request, same key)."""
        return f"{self.model}|{self.image}|{json.dumps(self.params, sort_keys=True)}"


@dataclass
class Outcome:
    """What one request gave: the job, status code, seconds from release to answer, the answer."""

    job: Job
    status: int
    seconds: float
    response: requests.Response | None
    error: str = ""


class RssSampler:
    """Samples the resident memory (MB) of processes and their children every ``interval_s`` in a thread.

    Args:
        pid: the server's process ID (or those of several servers: their sum is sampled).
        interval_s: sampling period.
    """

    def __init__(self, pid: int | list[int], interval_s: float = 0.1) -> None:
        self.processes = [psutil.Process(p) for p in ([pid] if isinstance(pid, int) else pid)]
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        """Current RSS of the process and its children, in MB."""
        total = 0
        procs = [q for p in self.processes for q in (p, *p.children(recursive=True))]
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.rss_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        """Largest sample."""
        return max(self.samples, default=0.0)


def send(url: str, job: Job, timeout_s: float, start: threading.Event, t0: list[float]) -> Outcome:
    """Wait for ``start``, send ``job``, time it from the common release time ``t0[0]``."""
    start.wait()
    try:
        response = requests.post(
            f"{url}/infer/{job.model}",
            params={"image": job.image},
            data={"params": json.dumps(job.params)},
            timeout=timeout_s,
        )
        return Outcome(job, response.status_code, time.perf_counter() - t0[0], response)
    except requests.RequestException as exc:
        return Outcome(job, 0, time.perf_counter() - t0[0], None, f"{type(exc).__name__}: {exc}")


def probe_info(url: str, stop: threading.Event, timeout_s: float, path: str = "/info/") -> list[float]:
    """Seconds each ``GET <path>`` took, sent back to back (0.2 s apart) until ``stop`` is set."""
    waits = []
    while not stop.is_set():
        started = time.perf_counter()
        with suppress(requests.RequestException):
            requests.get(f"{url}{path}", timeout=timeout_s)
        waits.append(time.perf_counter() - started)
        stop.wait(0.2)
    return waits


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method; the value itself for one sample, 0 for none)."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1]


def fire(url: str, jobs: list[Job], timeout_s: float, pid: int | list[int]) -> tuple[list[Outcome], dict]:
    """Send all ``jobs`` at once (one thread each) and wait for every answer.

    Args:
        url: the server's root URL.
        jobs: the requests.
        timeout_s: per-request timeout (also bounds the whole run).
        pid: the server's process ID, or the replicas' (memory sampling).

    Returns:
        the outcomes (in job order) and a summary: answered (200) and refused (503) counts, throughput of the
        answered ones, their p50/p95/max latency, peak and baseline RSS, the p95 and longest ``/info/`` wait
        during the run.
    """
    start, t0 = threading.Event(), [0.0]
    stop_probe = threading.Event()
    with RssSampler(pid) as rss, ThreadPoolExecutor(max_workers=len(jobs) + 1) as pool:
        baseline = rss.rss_mb()
        futures = [pool.submit(send, url, job, timeout_s, start, t0) for job in jobs]
        time.sleep(0.5)  # every thread is waiting at the start line
        t0[0] = time.perf_counter()
        start.set()
        probe = pool.submit(probe_info, url, stop_probe, timeout_s)
        outcomes = [f.result(timeout=timeout_s + 30) for f in futures]
        wall = time.perf_counter() - t0[0]
        stop_probe.set()
        info_waits = probe.result(timeout=timeout_s + 30)
    answered = [o for o in outcomes if o.status == 200]
    latencies = sorted(o.seconds for o in answered) or [0.0]
    summary = {
        "requests": len(jobs),
        "ok": len(answered),
        "busy_503": sum(o.status == 503 for o in outcomes),
        "retry_after_s": sorted({o.response.headers.get("Retry-After") for o in outcomes if o.status == 503}),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(answered) / wall, 3),
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(latencies[-1], 3),
        "rss_before_mb": round(baseline, 1),
        "rss_peak_mb": round(rss.peak_mb, 1),
        "info_probes": len(info_waits),
        "info_p95_s": round(percentile(info_waits, 95), 3),
        "info_max_wait_s": round(max(info_waits, default=0.0), 3),
    }
    logger.info("load: %s", summary)
    return outcomes, summary


def distinct_jobs(studies: Path) -> list[Job]:
    """An automatic and a click request (at the image centre) per PNG image of ``studies``."""
    jobs = []
    for path in sorted(studies.glob("*.png")):
        with Image.open(path) as im:
            w, h = im.size
        jobs += [
            Job("radvlsm_auto", path.stem),
            Job("radvlsm_interactive", path.stem, {"foreground": [[w // 2, h // 2]]}),
        ]
    return jobs
