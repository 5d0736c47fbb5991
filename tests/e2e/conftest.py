"""End-to-end fixtures: the MONAI Label test helpers (``tests/monailabel_app``) and the app's ``lib`` on the path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monailabel_app"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "monailabel_app"))  # the app's ``lib``
