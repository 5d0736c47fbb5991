"""A current OHIF (3.13, the prebuilt ``dist/`` of the npm ``@ohif/app`` package) served beside MONAI Label.

MONAI Label 0.8.5 ships an OHIF 3 build whose MONAI Label panel paints only into labelmap volumes, which
a one-image ultrasound series never gets. OHIF 3.9 and later segment stack viewports, so annotation
teams use this site instead: its segmentation mode opens the pre-annotation SEG the app stored in the
PACS (:mod:`lib.preannotation`) as an editable labelmap over the 2D image and stores the corrected SEG
back to the PACS. The site is OHIF's static files (with the single-page-app fallback to ``index.html``),
our ``monailabel_app/ohif/app-config.js`` in place of OHIF's, and a same-origin proxy of ``/dicom-web/``
to the PACS (no CORS setup in the PACS, PACS credentials stay on the server).

Run (``scripts/install_e2e.sh`` installs the dist into ``build/ohif``)::

    python monailabel_app/lib/ohif_site.py --pacs http://127.0.0.1:8042/dicom-web --port 3000

then open ``http://server:3000/segmentation?StudyInstanceUIDs=<study UID>``.
"""

from __future__ import annotations

import argparse
import logging
import mimetypes
import os
import posixpath
import urllib.parse
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIST = REPO_ROOT / "build" / "ohif"
APP_CONFIG = REPO_ROOT / "monailabel_app" / "ohif" / "app-config.js"
PROXY_PREFIX = "/dicom-web"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
PROXY_TIMEOUT_S = 120
CHUNK = 1 << 16
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


class OHIFHandler(BaseHTTPRequestHandler):
    """Static OHIF files, our app config, and ``/dicom-web/*`` forwarded to the PACS.

    Args:
        dist: the OHIF ``dist`` folder.
        app_config: the ``app-config.js`` served at ``/app-config.js``.
        pacs: the PACS DICOMweb root (``http://host:8042/dicom-web``).
        auth: ``(user, password)`` for the PACS, or None.
    """

    protocol_version = "HTTP/1.1"

    def __init__(self, *args, dist: Path, app_config: Path, pacs: str, auth: tuple[str, str] | None, **kwargs):
        self.dist, self.app_config, self.pacs, self.auth = dist, app_config, pacs.rstrip("/"), auth
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        """A PACS request, our config, a static file, or ``index.html`` for the app's own routes."""
        path = urllib.parse.urlsplit(self.path).path
        if path == PROXY_PREFIX or path.startswith(PROXY_PREFIX + "/"):
            self._proxy()
        elif path == "/app-config.js":
            self._file(self.app_config)
        else:
            self._file(self._static(path))

    def do_POST(self) -> None:
        """STOW-RS (and any other POST) to the PACS; nothing else accepts POST."""
        if urllib.parse.urlsplit(self.path).path.startswith(PROXY_PREFIX + "/"):
            self._proxy()
        else:
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    def _static(self, path: str) -> Path:
        """The file for ``path`` inside the dist, or ``index.html`` (OHIF routes such as ``/segmentation``)."""
        clean = posixpath.normpath(urllib.parse.unquote(path)).lstrip("/")
        candidate = (self.dist / clean).resolve()
        if clean and candidate.is_file() and candidate.is_relative_to(self.dist.resolve()):
            return candidate
        return self.dist / "index.html"

    def _file(self, file: Path) -> None:
        data = file.read_bytes()
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache" if file.suffix in (".html", ".json") else "max-age=3600")
        self.end_headers()
        self.wfile.write(data)

    def _proxy(self) -> None:
        tail = self.path[len(PROXY_PREFIX) :]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS | {"accept-encoding"}}
        try:
            upstream = requests.request(
                self.command, self.pacs + tail, data=body, headers=headers, auth=self.auth,
                stream=True, timeout=PROXY_TIMEOUT_S,
            )  # fmt: skip
        except requests.RequestException as exc:
            logger.warning("PACS request %s %s failed: %s", self.command, tail, exc)
            self.send_error(HTTPStatus.BAD_GATEWAY, f"PACS unreachable: {exc}")
            return
        with upstream:
            content = upstream.raw.read(decode_content=True)
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS | {"content-encoding"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)


def make_server(
    pacs: str,
    host: str = "127.0.0.1",
    port: int = 3000,
    dist: Path = DEFAULT_DIST,
    app_config: Path = APP_CONFIG,
    auth: tuple[str, str] | None = None,
) -> ThreadingHTTPServer:
    """The OHIF site (not yet serving; call ``serve_forever``).

    Raises:
        FileNotFoundError: no OHIF dist (``index.html``) in ``dist``: run ``scripts/install_e2e.sh``.
    """
    if not (Path(dist) / "index.html").is_file():
        raise FileNotFoundError(f"no OHIF dist in {dist}: run scripts/install_e2e.sh (npm @ohif/app)")
    handler = partial(OHIFHandler, dist=Path(dist), app_config=Path(app_config), pacs=pacs, auth=auth)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the OHIF site until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pacs", required=True, help="PACS DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--dist", type=Path, default=DEFAULT_DIST, help="OHIF dist folder (default build/ohif)")
    parser.add_argument("--app-config", type=Path, default=APP_CONFIG)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    user, password = os.environ.get("RADVLSM_PACS_USERNAME"), os.environ.get("RADVLSM_PACS_PASSWORD")
    server = make_server(args.pacs, args.host, args.port, args.dist, args.app_config,
                         (user, password) if user and password else None)  # fmt: skip
    logger.info("OHIF at http://%s:%d/ (PACS %s)", args.host, server.server_address[1], args.pacs)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
