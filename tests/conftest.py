"""Shared fixtures: synthetic phantom data (always) and the real BUS-BRA folder (when present)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUSBRA_DIR = Path(os.environ.get("RADVLSM_BUSBRA_DIR", REPO_ROOT.parent / "shared" / "data" / "bus-bra"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom dataset in the BUS-BRA layout (12 images, 6 patients), made once per session."""
    from radvlsm.data.phantom import generate_phantom_dataset

    out = tmp_path_factory.mktemp("phantom")
    generate_phantom_dataset(out, n_images=12, seed=0)
    return out


@pytest.fixture(scope="session")
def busbra_dir() -> Path:
    """The real development data; tests that need it skip with a message when it is absent."""
    if not (BUSBRA_DIR / "bus_data.csv").is_file():
        pytest.skip(f"real BUS-BRA data not found at {BUSBRA_DIR} (set RADVLSM_BUSBRA_DIR to run this test)")
    return BUSBRA_DIR


# the tiny network: the bundle's network_def with these keys changed (64-pixel frame, random weights)
TINY_NETWORK = {"variant": "tiny", "text_encoder": "tiny", "embed_dim": 32}


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., Any]:
    """Factory of tiny networks built from the bundle's ``inference.json``: ``tiny_model(radiomics=False, ...)``.

    Keyword arguments override further ``network_def`` keys.
    """
    from radvlsm.config import build_network

    def make(**overrides: Any):
        return build_network(**{**TINY_NETWORK, **overrides})

    return make


@pytest.fixture(scope="session")
def stage_settings():
    """The training stages' optimisation constants, as the bundle's ``train.json`` sets them."""
    from radvlsm.config import bundle_parser

    return bundle_parser(config="train.json").get_parsed_content("stage_settings")


@pytest.fixture()
def predict() -> Callable[..., Any]:
    """``predict(model, image, **prompts)``: one image through a fresh :class:`RadVLSMPredictor`."""
    from radvlsm.predictor import RadVLSMPredictor

    def run(model, image, **prompts: Any):
        predictor = RadVLSMPredictor(model)
        predictor.set_image(image)
        return predictor.predict(**prompts)

    return run


@pytest.fixture(scope="session", autouse=True)
def _encoder_export_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exported encoders (radvlsm.models.encoders.runtime) go to a temporary folder, also for subprocesses."""
    from radvlsm.models.encoders.runtime import CACHE_ENV

    os.environ.setdefault(CACHE_ENV, str(tmp_path_factory.mktemp("radvlsm-cache")))
