"""Hostile files for the robustness tests: each the kind of thing an annotation team's upload folder holds.

``write_hostile_studies(folder)`` writes them beside good phantom images and returns what each should give.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

BIG_SIDE = 8000


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` pixels but holds one byte of data (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0")) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def gradient(h: int, w: int, dtype: type = np.uint8, top: int = 255) -> np.ndarray:
    """A diagonal ramp (not constant, so the image carries some content)."""
    return ((np.add.outer(np.arange(h), np.arange(w)) * top // max(1, h + w - 2)) % (top + 1)).astype(dtype)


def write_hostile_studies(folder: Path, good: Path, huge: bool = True) -> dict[str, tuple[int, str]]:
    """Write the hostile images into ``folder``.

    Args:
        folder: the studies folder.
        good: a good phantom PNG (truncated and renamed copies are made from it).
        huge: also write the 8000 x 8000 image (about 2.5 GB of memory to segment).

    Returns:
        image ID -> (expected HTTP status of ``radvlsm_auto``, words the answer must hold; "" for 200).
    """
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "zero_bytes.png").write_bytes(b"")
    (folder / "text_named_png.png").write_text("name,pathology\nbus_0001-l,benign\n" * 20)
    (folder / "pdf_named_jpg.jpg").write_bytes(b"%PDF-1.4\n" + b"0" * 500)
    png_claiming_size(folder / "bomb.png", 100_000, 100_000)
    Image.fromarray(gradient(120, 160, np.uint16, 65535)).save(folder / "gray16.png")
    rgba = np.dstack([gradient(90, 110)] * 3 + [np.full((90, 110), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    if huge:
        Image.fromarray(gradient(BIG_SIDE, BIG_SIDE)).save(folder / "huge.png", compress_level=1)
    Image.fromarray(gradient(16, 16)).save(folder / "tiny16.png")
    Image.fromarray(np.full((64, 80), 77, np.uint8)).save(folder / "constant.png")
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((40, 30, 6)).astype(np.float32), np.eye(4)), str(folder / "volume.nii.gz"))
    series = rng.random((40, 30, 1, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(series, np.eye(4)), str(folder / "series.nii.gz"))
    nan = rng.random((40, 30)).astype(np.float32)
    nan[3, 4] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), str(folder / "nan.nii.gz"))
    expected = {
        "truncated": (422, "truncated"),
        "zero_bytes": (422, "zero bytes"),
        "text_named_png": (422, "not a readable image"),
        "pdf_named_jpg": (422, "not a readable image"),
        "bomb": (422, "too large"),
        "volume": (422, "3D volume"),
        "series": (422, "3D volume or time series"),
        "nan": (422, "NaN"),
        "gray16": (200, ""),
        "rgba": (200, ""),
        "huge": (200, ""),
        "tiny16": (200, ""),
        "constant": (200, ""),
    }
    return expected if huge else {k: v for k, v in expected.items() if k != "huge"}
