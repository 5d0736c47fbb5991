"""Faults while serving: a corrupt or mismatched ``model.pt`` is refused with a clear message and the last
good weights keep serving; a good file is picked up again without a restart. One real server (tiny network).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from label_server import APP_DIR, TINY_CONF, LabelServer, parse_infer
from lib.bundle_model import BundleModel
from lib.options import AppOptions

from radvlsm.engine.bundle import save_model

IMAGE = "bus_0001-l"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, studies_from: Callable[[Path, int], Path], label_server: Callable
) -> Iterator[LabelServer]:
    studies = studies_from(tmp_path_factory.mktemp("studies"), 1)
    with label_server(studies, tmp_path_factory.mktemp("server"), TINY_CONF) as running:
        yield running


def network(seed: int, **overrides: object) -> torch.nn.Module:
    """The server's network (same bundle config and overrides), randomly initialised with ``seed``."""
    conf = {**TINY_CONF, **{f"network_def#{k}": str(v) for k, v in overrides.items()}}
    torch.manual_seed(seed)
    return BundleModel(AppOptions.from_conf(APP_DIR, conf)).bundle_config().get_parsed_content("network_def")


def served(server: LabelServer) -> dict:
    result, label = parse_infer(server.infer("radvlsm_auto", IMAGE))
    assert label is not None
    return result


def test_corrupt_weights_are_refused_and_the_last_good_ones_keep_serving(server: LabelServer) -> None:
    weights = server.model_dir / "model.pt"
    save_model(network(1), str(weights))
    good = served(server)
    stamp = good["model"]["stamp"]
    assert good["model"]["trained"] is True and good["model"]["warning"] is None

    data = weights.read_bytes()
    corrupt = {
        "truncated": data[: len(data) // 3],
        "garbage": b"not a checkpoint at all" * 100,
        "empty": b"",
    }
    for name, content in corrupt.items():
        weights.write_bytes(content)  # written in place, as a careless copy would
        result = served(server)
        assert result["model"]["stamp"] == stamp, name
        assert "cannot read model weights" in result["model"]["warning"], (name, result["model"])
        assert "still serving the previous weights" in result["model"]["warning"]
        assert result["malignancy_probability"] == pytest.approx(good["malignancy_probability"]), name
    assert "cannot read model weights" in server.log_tail(200_000)

    save_model(network(2, embed_dim=16), str(weights))  # readable, but another architecture
    result = served(server)
    assert "do not fit the model" in result["model"]["warning"] and result["model"]["stamp"] == stamp
    assert result["malignancy_probability"] == pytest.approx(good["malignancy_probability"])

    save_model(network(3), str(weights))  # a good file again: picked up without a restart
    fresh = served(server)
    assert fresh["model"]["warning"] is None and fresh["model"]["stamp"] != stamp
    assert fresh["malignancy_probability"] != pytest.approx(good["malignancy_probability"], abs=1e-6)
    assert server.alive()
