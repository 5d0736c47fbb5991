"""The README's server command with the bundle's real default network (pretrained LiteMedSAM, MiniLM).

The server starts on an empty ``model_dir`` (no ``model.pt`` there, as before a team's first training round):
it must start, warn, and serve the untrained heads on the pretrained encoder and decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from label_server import LabelServer, parse_infer
from PIL import Image


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, studies_from: Callable[[Path, int], Path], label_server: Callable
) -> Iterator[LabelServer]:
    studies = studies_from(tmp_path_factory.mktemp("studies_real"), 1)
    with label_server(studies, tmp_path_factory.mktemp("server_real"), {"device": "cpu"}) as running:
        yield running


@pytest.mark.slow
def test_default_network_serves_auto_and_clicks_without_model_pt(server: LabelServer, phantom_dir: Path) -> None:
    with Image.open(phantom_dir / "Images" / "bus_0001-l.png") as im:
        h, w = im.height, im.width
    auto, label = parse_infer(server.infer("radvlsm_auto", "bus_0001-l"))
    assert label is not None and label.shape == (h, w)
    assert auto["model"]["variant"] == "litemedsam" and auto["model"]["trained"] is False
    assert "litemedsam encoder" in auto["model"]["warning"] and auto["diagnosis"] in ("benign", "malignant")
    click, label = parse_infer(server.infer("radvlsm_interactive", "bus_0001-l", {"foreground": [[w // 2, h // 2, 0]]}))
    assert click["embedding_cached"] is True and label is not None and label.shape == (h, w)
