"""The real MONAI Label server (``monailabel start_server``) on 127.0.0.1, and HTTP helpers for it.

The server runs exactly as the README documents it (``monailabel start_server --app monailabel_app
--studies DIR --conf models radvlsm``) from the repository root, in its own process group that is always
terminated at the end. Weights and training runs go to temporary folders (``--conf model_dir``,
``--conf work_dir``), never into the bundle.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image
from requests_toolbelt.multipart.decoder import MultipartDecoder

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "monailabel_app"
TINY_CONF = {"network_def#variant": "tiny", "network_def#text_encoder": "tiny", "network_def#embed_dim": "32"}
STARTUP_TIMEOUT_S = 240
REQUEST_TIMEOUT_S = 180

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command() -> list[str]:
    """The ``monailabel`` command installed with this Python (``python -m monailabel.main`` without it)."""
    script = Path(sys.executable).parent / "monailabel"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "monailabel.main"]


class LabelServer:
    """A running MONAI Label server and HTTP helpers that talk to it like OHIF and 3D Slicer do.

    Args:
        url: ``http://127.0.0.1:<port>``.
        process: the server process (leader of its process group).
        log: the server's combined stdout/stderr file.
        model_dir: its ``--conf model_dir``.
        work_dir: its ``--conf work_dir``.
    """

    def __init__(self, url: str, process: subprocess.Popen, log: Path, model_dir: Path, work_dir: Path) -> None:
        self.url, self.process, self.log = url, process, log
        self.model_dir, self.work_dir = model_dir, work_dir

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server log (for assertion messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One HTTP request to the server."""
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
        return requests.request(method, self.url + path, **kwargs)

    def infer(self, model: str, image: str, params: dict | None = None, label: Path | None = None) -> requests.Response:
        """``POST /infer/<model>?image=<id>`` with ``params`` as the form field (and a ``label`` upload)."""
        files = {"label": (label.name, label.read_bytes(), "image/png")} if label else None
        data = {"params": json.dumps(params or {})}
        return self.request("POST", f"/infer/{model}", params={"image": image}, data=data, files=files)

    def alive(self) -> bool:
        """The process runs and ``/info/`` answers 200."""
        return self.process.poll() is None and self.request("GET", "/info/", timeout=60).status_code == 200


def parse_infer(response: requests.Response) -> tuple[dict, np.ndarray | None]:
    """The result JSON and label image of an infer answer (multipart ``params`` + ``image``, or JSON only)."""
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    if not response.headers.get("content-type", "").startswith("multipart/"):
        return response.json(), None
    params, label = None, None
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        if 'name="params"' in disposition:
            params = json.loads(part.content)
        elif 'name="image"' in disposition:
            tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"label-{time.time_ns()}.png"
            tmp.write_bytes(part.content)
            with Image.open(tmp) as im:
                label = np.asarray(im)
            tmp.unlink()
    assert params is not None, "no params part in the infer answer"
    return params, label


@contextmanager
def running_server(
    studies: Path | str, work: Path, conf: dict[str, str], env: dict[str, str] | None = None
) -> Iterator[LabelServer]:
    """Start ``monailabel start_server`` on a free port; yield when ``/info/`` answers; always stop it.

    Args:
        studies: the image folder or DICOMweb URL (``--studies``).
        work: a temporary folder for weights, training runs, sessions and the log.
        conf: extra ``--conf`` pairs.
        env: extra environment variables (e.g. ``MONAI_LABEL_DICOMWEB_CACHE_PATH``).
    """
    port = free_port()
    model_dir, work_dir = work / "models", work / "work"
    all_conf = {"models": "radvlsm", "model_dir": str(model_dir), "work_dir": str(work_dir), **conf}
    cmd = [*server_command(), "start_server", "--app", "monailabel_app", "--studies", str(studies)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    for key, value in all_conf.items():
        cmd += ["--conf", key, value]
    env = {
        **os.environ,
        "MONAILABEL_PYEXE": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",  # scoring runs when a test asks (2 shared CPU cores)
        "MONAI_LABEL_SESSION_PATH": str(work / "sessions"),
        **(env or {}),
    }
    log = work / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabelServer(f"http://127.0.0.1:{port}", process, log, model_dir, work_dir)
    try:
        wait_until_up(process, server.url + "/info/", "server", server.log_tail, STARTUP_TIMEOUT_S, interval_s=1)
        yield server
    finally:
        stop_process_group(process)


def wait_until_up(
    process: subprocess.Popen, probe_url: str, name: str, log_tail, timeout_s: float, interval_s: float = 1
) -> None:
    """Poll ``probe_url`` until it answers 200; fail with the log's tail if ``process`` exits or time runs out.

    Args:
        process: the started server.
        probe_url: a cheap GET of the server.
        name: the server's name, for messages.
        log_tail: callable giving the end of the server's log.
        timeout_s: how long to wait.
        interval_s: pause between probes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"{name} exited with {process.returncode}:\n{log_tail()}"
        assert time.monotonic() < deadline, f"{name} not up in {timeout_s} s:\n{log_tail()}"
        try:
            if requests.get(probe_url, timeout=10).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(interval_s)


def stop_process_group(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever of it remains (training, scoring children)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("server did not stop in %s s; killing its process group", grace_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
