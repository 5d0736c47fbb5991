"""Orthanc with its DICOMweb plugin, started from a temporary configuration on 127.0.0.1 (never the system service).

Orthanc binds its HTTP port on every interface but, with ``RemoteAccessAllowed: false``, answers only
local clients; its DICOM (DIMSE) server is off. Storage and index live in the given temporary folder.
The process runs in its own process group, always stopped at the end.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from label_server import free_port, stop_process_group, wait_until_up

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
STARTUP_TIMEOUT_S = 60

logger = logging.getLogger(__name__)


def dicomweb_plugin() -> Path | None:
    """The Debian ``orthanc-dicomweb`` plugin library, or None when the package is not installed."""
    for folder in DICOMWEB_PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def missing_pieces() -> list[str]:
    """What of Orthanc is not installed (empty when it can run)."""
    missing = [] if shutil.which(ORTHANC_BINARY) else ["Orthanc (Debian package orthanc)"]
    return missing + ([] if dicomweb_plugin() else ["Orthanc DICOMweb plugin (Debian package orthanc-dicomweb)"])


class OrthancServer:
    """A running Orthanc: REST at ``url``, DICOMweb at ``dicomweb``.

    Args:
        url: ``http://127.0.0.1:<port>``.
        process: the Orthanc process (leader of its process group).
        log: its log file.
    """

    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.process, self.log = url, process, log
        self.dicomweb = f"{url}/dicom-web"

    def log_tail(self, chars: int = 3000) -> str:
        """The end of Orthanc's log (for assertion messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def upload(self, files: list[Path]) -> list[dict]:
        """``POST /instances`` each DICOM file; Orthanc's answers (``ID``, ``ParentSeries``, ``Status``)."""
        answers = []
        for path in files:
            response = requests.post(f"{self.url}/instances", data=path.read_bytes(), timeout=60)
            assert response.status_code == 200, f"upload of {path} failed: {response.status_code} {response.text}"
            answers.append(response.json())
        return answers

    def series_metadata(self, study: str, series: str) -> list[dict]:
        """WADO-RS series metadata (DICOM JSON, one item per instance)."""
        response = requests.get(f"{self.dicomweb}/studies/{study}/series/{series}/metadata", timeout=60)
        assert response.status_code == 200, f"metadata failed: {response.status_code} {response.text}"
        return response.json()

    def find_series(self, **query: str) -> list[dict]:
        """QIDO-RS ``/series`` search (DICOM JSON answers)."""
        response = requests.get(f"{self.dicomweb}/series", params=query, timeout=60)
        assert response.status_code == 200, f"QIDO failed: {response.status_code} {response.text}"
        return response.json() if response.text.strip() else []


def orthanc_config(work: Path, port: int, plugin: Path) -> dict:
    """Orthanc's configuration: local HTTP only, no DIMSE, no authentication, storage in ``work``."""
    return {
        "Name": "radvlsm-e2e",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "storage"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "HttpCompressionEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }


@contextmanager
def running_orthanc(work: Path) -> Iterator[OrthancServer]:
    """Start Orthanc on a free port from a configuration in ``work``; yield when it answers; always stop it.

    Args:
        work: a temporary folder for the configuration, storage and log.
    """
    plugin = dicomweb_plugin()
    assert plugin is not None, "orthanc-dicomweb is not installed"
    port = free_port()
    config = work / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(work, port, plugin), indent=2))
    log = work / "orthanc.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [shutil.which(ORTHANC_BINARY) or ORTHANC_BINARY, str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
        )  # fmt: skip
    server = OrthancServer(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(process, f"{server.dicomweb}/studies", "Orthanc", server.log_tail, STARTUP_TIMEOUT_S, 0.5)
        logger.info("Orthanc up at %s", server.url)
        yield server
    finally:
        stop_process_group(process, grace_s=10)
