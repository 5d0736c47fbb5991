"""Load: 32 concurrent infer requests on 127.0.0.1 all answer, correctly, in bounded time and memory.

The app runs infer requests in worker threads behind a queue larger than 32 (``lib/monailabel_fixes``), and
the network predicts one image at a time: concurrent requests queue (their latencies spread from one
request's time to all 32 of them), none is refused, and the answers must equal those of the same requests
sent one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from label_server import TINY_CONF, LabelServer, parse_infer
from load_client import Job, distinct_jobs, fire

N_IMAGES = 4
N_REQUESTS = 32
TIMEOUT_S = 240
RSS_GROWTH_LIMIT_MB = 600


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, studies_from: Callable[[Path, int], Path]) -> Path:
    return studies_from(tmp_path_factory.mktemp("studies"), N_IMAGES)


@pytest.fixture(scope="module")
def server(studies: Path, tmp_path_factory: pytest.TempPathFactory, label_server: Callable) -> Iterator[LabelServer]:
    with label_server(studies, tmp_path_factory.mktemp("server"), TINY_CONF) as running:
        yield running


def jobs_for(studies: Path) -> list[Job]:
    """Automatic and click requests over the studies' images, repeated up to :data:`N_REQUESTS`."""
    distinct = distinct_jobs(studies)
    return [distinct[i % len(distinct)] for i in range(N_REQUESTS)]


def test_concurrent_requests_all_answer_correctly_in_bounded_time_and_memory(
    server: LabelServer, studies: Path
) -> None:
    jobs = jobs_for(studies)
    reference = {}
    for job in {j.key: j for j in jobs}.values():  # one by one first: the expected answers (and a warm server)
        reference[job.key] = parse_infer(server.infer(job.model, job.image, job.params))
    outcomes, summary = fire(server.url, jobs, TIMEOUT_S, server.process.pid)
    failures = [(o.job.key, o.status, o.error or o.response.text[:300]) for o in outcomes if o.status != 200]
    assert not failures, failures
    for outcome in outcomes:
        result, label = parse_infer(outcome.response)
        expected_result, expected_label = reference[outcome.job.key]
        assert label is not None and np.array_equal(label, expected_label), outcome.job.key
        assert result["malignancy_probability"] == pytest.approx(expected_result["malignancy_probability"])
        assert result["diagnosis"] == expected_result["diagnosis"]
    assert summary["ok"] == N_REQUESTS and summary["max_s"] < TIMEOUT_S
    assert summary["rss_peak_mb"] - summary["rss_before_mb"] < RSS_GROWTH_LIMIT_MB, summary
    assert server.alive()
