"""End-to-end fixtures: the MONAI Label test helpers (``tests/monailabel_app``) on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monailabel_app"))
