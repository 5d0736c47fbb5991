"""Fixtures for the MONAI Label app tests: the server factory and phantom studies folders.

The app's ``lib`` package is put on ``sys.path`` (as MONAI Label does) for the unit tests.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from label_server import APP_DIR, running_server

sys.path.insert(0, str(APP_DIR))  # the app's ``lib`` package, as MONAI Label imports it


@pytest.fixture(scope="session")
def label_server() -> Callable[..., Any]:
    """:func:`running_server`, for module-scoped server fixtures."""
    return running_server


@pytest.fixture(scope="session")
def studies_from(phantom_dir: Path) -> Callable[[Path, int], Path]:
    """Copy the first ``n`` phantom images into a fresh studies folder (MONAI Label adds labels/ and a JSON)."""

    def make(target: Path, n: int) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted((phantom_dir / "Images").glob("*.png"))[:n]:
            shutil.copy(image, target / image.name)
        return target

    return make
