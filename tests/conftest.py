"""Shared fixtures: synthetic phantom data (always) and the real BUS-BRA folder (when present)."""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture(scope="session", autouse=True)
def _encoder_export_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exported encoders (radvlsm.models.encoders.runtime) go to a temporary folder, also for subprocesses."""
    from radvlsm.models.encoders.runtime import CACHE_ENV

    os.environ.setdefault(CACHE_ENV, str(tmp_path_factory.mktemp("radvlsm-cache")))
