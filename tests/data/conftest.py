"""Tiny synthetic datasets (a few PNGs written with PIL) in the BUS-BRA and BUSI layouts."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

COLUMNS = ("ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX")


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def lesion_pair(h: int, w: int, box: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey image with a dark rectangle and its 0/255 mask; ``box`` is ``(x, y, w, h)``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 160, size=(h, w)).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    x, y, bw, bh = box
    mask[y : y + bh, x : x + bw] = 255
    image[mask > 0] = 30
    return image, mask


@pytest.fixture
def make_busbra(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a BUS-BRA folder: ``rows`` of (ID, Case, Pathology, BIRADS, (H, W), box or None)."""

    def make(rows: list[tuple] | None = None, columns: tuple[str, ...] = COLUMNS, name: str = "busbra") -> Path:
        root = tmp_path / name
        rows = rows or [
            ("bus_0001-l", "1", "benign", "3", (40, 60), (10, 8, 20, 12)),
            ("bus_0001-r", "1", "benign", "4", (40, 60), (30, 20, 10, 10)),
            ("bus_0002-s", "2", "malignant", "5", (64, 48), (5, 30, 25, 20)),
            ("bus_0003-l", "3", "malignant", "4", (50, 50), (1, 1, 5, 5)),
        ]
        (root / "Images").mkdir(parents=True, exist_ok=True)
        (root / "Masks").mkdir(parents=True, exist_ok=True)
        with (root / "bus_data.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            for i, (image_id, case, pathology, birads, (h, w), box) in enumerate(rows):
                image, mask = lesion_pair(h, w, box or (0, 0, 0, 0), seed=i)
                save_png(image, root / "Images" / f"{image_id}.png")
                save_png(mask, root / "Masks" / f"{image_id.replace('bus_', 'mask_')}.png")
                row = {
                    "ID": image_id,
                    "Case": case,
                    "Histology": "fibroadenoma" if pathology == "benign" else "invasive ductal carcinoma",
                    "Pathology": pathology,
                    "BIRADS": birads,
                    "Device": "test probe",
                    "Width": w,
                    "Height": h,
                    "Side": "left",
                    "BBOX": str(list(box or [0, 0, 0, 0])),
                }
                writer.writerow(row)
        return root

    return make


@pytest.fixture
def busi_dir(tmp_path: Path) -> Path:
    """BUSI layout: one benign image with two lesion masks, one malignant, one normal (empty mask)."""
    root = tmp_path / "busi"
    image, mask_a = lesion_pair(30, 40, (2, 3, 6, 5), seed=1)
    _, mask_b = lesion_pair(30, 40, (25, 15, 10, 10), seed=1)
    save_png(image, root / "benign" / "benign (1).png")
    save_png(mask_a, root / "benign" / "benign (1)_mask.png")
    save_png(mask_b, root / "benign" / "benign (1)_mask_1.png")
    image, mask = lesion_pair(32, 32, (8, 8, 12, 9), seed=2)
    save_png(np.stack([image] * 3, axis=-1), root / "malignant" / "malignant (1).png")  # RGB like the real BUSI
    save_png(mask, root / "malignant" / "malignant (1)_mask.png")
    image, mask = lesion_pair(20, 24, (0, 0, 0, 0), seed=3)
    save_png(image, root / "normal" / "normal (1).png")
    save_png(mask, root / "normal" / "normal (1)_mask.png")
    return root


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The module's helpers for tests: ``save_png``, ``lesion_pair`` and the CSV ``COLUMNS``."""
    return SimpleNamespace(save_png=save_png, lesion_pair=lesion_pair, COLUMNS=COLUMNS)
