"""Synthetic breast-ultrasound phantom written in the BUS-BRA layout.

The phantom is the product's built-in dataset: the bundles train on it offline and every test uses
it. Each image is a B-mode-like scan of layered breast tissue (skin line, subcutaneous fat with
Cooper's ligaments, fibroglandular layer, pectoral muscle, chest wall) with multiplicative Rayleigh
speckle, depth attenuation and log compression, and exactly one lesion:

- benign-like (fibroadenoma, cyst): oval, circumscribed, parallel (wider-than-tall), homogeneous
  hypo-/anechoic interior and posterior acoustic enhancement (a brighter band below);
- malignant-like (invasive carcinoma): irregular or spiculated margin, taller-than-wide,
  heterogeneous interior and posterior acoustic shadowing (a darker band below).

Lesion outlines are star shapes from polar radius functions (an ellipse times low-order harmonics
and, for malignant lesions, narrow spikes), rasterised with numpy.

Layout written by :func:`generate_phantom_dataset` (the real BUS-BRA one)::

    out_dir/
      Images/bus_0001-l.png   8-bit grayscale (H, W)
      Masks/mask_0001-l.png   0/255 lesion mask (H, W)
      bus_data.csv            ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX
      phantom.json            generation parameters (written last)

Two images per case (sides ``l``/``r``, like two views of one lesion) so splits must group by case;
an odd image count ends with one single-image case (side ``s``). ``BBOX`` is ``"[x,y,w,h]"``: the
mask's bounding box in 0-based pixels (``w = x_max - x_min + 1``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

DEVICE = "radvlsm phantom"
CSV_NAME = "bus_data.csv"
MANIFEST_NAME = "phantom.json"
CSV_COLUMNS = ("ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX")
GENERATOR_VERSION = 1
PATHOLOGIES = ("benign", "malignant")
HISTOLOGIES = {
    "benign": ("fibroadenoma", "cyst", "fibrocystic changes"),
    "malignant": ("invasive ductal carcinoma", "invasive lobular carcinoma"),
}
_HISTOLOGY_P = {"benign": (0.6, 0.3, 0.1), "malignant": (0.85, 0.15)}
_BIRADS = {"benign": ((2, 3, 4), (0.35, 0.45, 0.2)), "malignant": ((4, 5), (0.6, 0.4))}
_SIZE_RANGE = (200, 400)
_MIN_SIDE = 64
_SIDE_NAMES = {"l": "left", "r": "right", "s": "single"}
_PHANTOM_FILE = re.compile(r"^(bus|mask)_\d{4,}-[lrs]\.png$")


# ----------------------------------------------------------------------------------------------
# Random fields
# ----------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise low-pass filtered with ``sigma`` (pixels), float32 ``shape``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def _rayleigh_speckle(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Correlated Rayleigh speckle with unit mean square: ``|blurred complex Gaussian|``.

    Blurring a circular complex Gaussian keeps it Gaussian, so the envelope stays Rayleigh
    distributed; ``sigma`` (axial, lateral) sets the speckle grain (laterally elongated).
    """
    re_part = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    im_part = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    envelope = np.hypot(re_part, im_part)
    return envelope / np.sqrt(np.mean(envelope**2))


def _undulating(rng: np.random.Generator, width: int, base: float, amplitude: float) -> np.ndarray:
    """A smooth random curve over ``width`` columns: ``base`` plus a few low-frequency sines."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    curve = np.full(width, base, dtype=np.float32)
    for freq in (0.5, 1.0, 2.0):
        curve += amplitude / freq * np.sin(2 * np.pi * (freq * x + rng.uniform()))
    return curve


def _ridges(field: np.ndarray, thickness: float) -> np.ndarray:
    """Thin curvilinear lines at the zero crossings of a smooth field, values in ``[0, 1]``."""
    return np.exp(-((field / thickness) ** 2))


# ----------------------------------------------------------------------------------------------
# Background tissue
# ----------------------------------------------------------------------------------------------
def _tissue(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Echogenicity map of layered breast tissue (before speckle and attenuation).

    Args:
        rng: random generator.
        size: ``(H, W)``.

    Returns:
        ``(tissue, bounds)``: float32 ``(H, W)`` echogenicity (glandular tissue about 1) and the
        per-column layer boundaries in rows (``fat``: top of gland, ``gland``: bottom of gland).
    """
    h, w = size
    rows = np.arange(h, dtype=np.float32)[:, None]
    skin = rng.uniform(0.025, 0.045) * h
    fat_bottom = _undulating(rng, w, rng.uniform(0.16, 0.26), 0.025) * h
    gland_bottom = _undulating(rng, w, rng.uniform(0.7, 0.78), 0.03) * h
    muscle_top = gland_bottom + rng.uniform(0.02, 0.04) * h
    muscle_bottom = muscle_top + _undulating(rng, w, rng.uniform(0.09, 0.13), 0.01) * h

    cooper = _ridges(_smooth_noise(rng, size, (5.0, 12.0)), 0.14)
    fat = 0.22 + 0.06 * _smooth_noise(rng, size, 5.0) + 1.0 * cooper
    gland = 0.95 + 0.3 * _smooth_noise(rng, size, (3.0, 6.0)) - 0.35 * _ridges(_smooth_noise(rng, size, 7.0), 0.25)
    fibres = np.sin(2 * np.pi * (rows / rng.uniform(5.0, 8.0)) + 1.5 * _smooth_noise(rng, size, (4.0, 25.0)))
    muscle = 0.45 + 0.25 * fibres
    wall = 0.2 + 0.08 * _smooth_noise(rng, size, 6.0)

    tissue = np.where(rows < fat_bottom, fat, gland)
    tissue = np.where(rows >= gland_bottom, 0.25, tissue)  # thin retromammary fat
    tissue = np.where(rows >= muscle_top, muscle, tissue)
    tissue = np.where(rows >= muscle_bottom, wall, tissue)
    tissue = ndimage.gaussian_filter(np.clip(tissue, 0.05, None).astype(np.float32), 1.2)
    tissue += 1.6 * np.exp(-(((rows - skin) / 1.5) ** 2))  # bright skin line
    tissue[rows[:, 0] < skin - 2] *= 0.5  # gel / stand-off above the skin
    return tissue.astype(np.float32), {"fat": fat_bottom, "gland": gland_bottom}


# ----------------------------------------------------------------------------------------------
# Lesion shape
# ----------------------------------------------------------------------------------------------
def _shape_params(rng: np.random.Generator, pathology: str, histology: str) -> dict[str, Any]:
    """Random parameters of the polar radius function (unit scale: the longer semi-axis is 1)."""
    if pathology == "benign":
        ratio = rng.uniform(0.45, 0.75) if histology != "cyst" else rng.uniform(0.6, 0.85)
        axes = (1.0, ratio)  # (lateral, axial): wider-than-tall, parallel
        tilt = rng.uniform(-0.15, 0.15)
        ks = np.arange(2, 6)
        amps = rng.uniform(0.0, 0.05 if histology == "fibroadenoma" else 0.02, ks.size)
        spikes = np.zeros((0, 3))
    else:
        axes = (rng.uniform(0.55, 0.85), 1.0)  # taller-than-wide, not parallel
        tilt = rng.uniform(-0.2, 0.2)
        ks = np.arange(3, 19)
        amps = rng.uniform(0.0, 0.14, ks.size) / np.sqrt(ks - 2)
        n_spikes = int(rng.integers(8, 18)) if rng.uniform() < 0.6 else int(rng.integers(0, 4))
        spikes = np.stack(
            [
                rng.uniform(0, 2 * np.pi, n_spikes),
                rng.uniform(0.15, 0.45, n_spikes),
                rng.uniform(0.025, 0.07, n_spikes),
            ],
            axis=1,
        )
    return {
        "axes": axes,
        "tilt": tilt,
        "ks": ks,
        "amps": amps,
        "phases": rng.uniform(0, 2 * np.pi, ks.size),
        "spikes": spikes,
    }


def _polar_radius(theta: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Lesion radius at angles ``theta`` (radians, image axes: x right, y down) at unit scale."""
    a, b = params["axes"]
    t = theta - params["tilt"]
    radius = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
    modulation = np.ones_like(theta)
    for k, amp, phase in zip(params["ks"], params["amps"], params["phases"], strict=True):
        modulation += amp * np.cos(k * theta + phase)
    radius = radius * modulation
    for angle, amp, width in params["spikes"]:
        delta = np.angle(np.exp(1j * (theta - angle)))  # wrapped to (-pi, pi]
        radius = radius * (1.0 + amp * np.exp(-((delta / width) ** 2)))
    return radius


def _place_lesion(
    rng: np.random.Generator, params: dict[str, Any], size: tuple[int, int], pathology: str
) -> tuple[float, float, float]:
    """Choose centre ``(cx, cy)`` and scale (pixels) so the lesion sits in the breast, fully inside."""
    h, w = size
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    radius = _polar_radius(theta, params)
    dx, dy = radius * np.cos(theta), radius * np.sin(theta)
    left, right, up, down = -dx.min(), dx.max(), -dy.min(), dy.max()
    cy = rng.uniform(0.33, 0.47) * h
    scale = rng.uniform(0.12, 0.26 if pathology == "benign" else 0.22) * min(h, w)
    margin = 4.0
    top_limit, bottom_limit = 0.14 * h, 0.66 * h  # leave room for the posterior band below
    scale = min(scale, (cy - top_limit) / up, (bottom_limit - cy) / down, (w - 2 * margin) / (left + right))
    cx = rng.uniform(margin + left * scale, w - margin - right * scale)
    return float(cx), float(cy), float(scale)


def _rasterise(params: dict[str, Any], centre: tuple[float, float], scale: float, size: tuple[int, int]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the star-shaped lesion (its largest connected component)."""
    cx, cy = centre
    reach = scale * float(_polar_radius(np.linspace(0, 2 * np.pi, 720, endpoint=False), params).max()) + 2
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size[0])
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size[1])
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs - cx, ys - cy
    inside = np.zeros(size, dtype=bool)
    inside[y0:y1, x0:x1] = np.hypot(dx, dy) <= scale * _polar_radius(np.arctan2(dy, dx), params)
    labels, n = ndimage.label(inside)
    if n > 1:
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        inside = labels == int(np.argmax(counts))
    return inside


# ----------------------------------------------------------------------------------------------
# Lesion appearance
# ----------------------------------------------------------------------------------------------
def _posterior_factor(mask: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative map: ``gain`` in the band below the lesion (enhancement > 1, shadow < 1)."""
    h = mask.shape[0]
    rows = np.arange(h, dtype=np.float32)[:, None]
    thickness = mask.sum(axis=0).astype(np.float32)
    has = thickness > 0
    bottom = np.where(has, h - 1 - np.argmax(mask[::-1], axis=0), h).astype(np.float32)
    weight = np.sqrt(thickness / max(float(thickness.max()), 1.0))
    below = np.clip((rows - bottom[None]) / 3.0, 0.0, 1.0) * np.exp(
        -(rows - bottom[None]).clip(0) / (rng.uniform(0.5, 1.0) * h)
    )
    factor = 1.0 + (gain - 1.0) * weight[None] * below
    return ndimage.gaussian_filter(factor.astype(np.float32), (1.5, 3.0))


def _apply_lesion(
    rng: np.random.Generator, tissue: np.ndarray, mask: np.ndarray, pathology: str, histology: str
) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity with the lesion painted in, and its posterior acoustic factor.

    Returns:
        ``(echo, posterior)``: float32 ``(H, W)`` maps.
    """
    shape = mask.shape
    area = mask.astype(np.float32)
    if pathology == "benign":
        soft = ndimage.gaussian_filter(area, 0.7)
        level = rng.uniform(0.02, 0.07) if histology == "cyst" else rng.uniform(0.15, 0.4)
        interior = level * (1.0 + 0.08 * _smooth_noise(rng, shape, 4.0))
        gain = rng.uniform(1.5, 2.2) if histology == "cyst" else rng.uniform(1.3, 1.8)
        rim = 0.6 * rng.uniform() if histology == "fibroadenoma" else 0.0  # thin echogenic capsule
        ring = np.clip(ndimage.gaussian_filter(area, 1.0) - area, 0, None) * rim
    else:
        soft = ndimage.gaussian_filter(area, 1.4)
        level = rng.uniform(0.12, 0.35)
        interior = level * np.clip(1.0 + 0.45 * _smooth_noise(rng, shape, 3.0), 0.2, None)
        foci = _ridges(_smooth_noise(rng, shape, 1.2), 0.08) * (rng.uniform() < 0.5)  # microcalcifications
        interior = interior + 1.5 * foci * (_smooth_noise(rng, shape, 2.0) > 1.2)
        gain = rng.uniform(0.2, 0.45)
        halo = 0.9 * rng.uniform() if rng.uniform() < 0.5 else 0.0  # echogenic halo
        ring = np.clip(ndimage.gaussian_filter(area, 3.0) - area, 0, None) * halo
    echo = tissue * (1.0 - soft) + interior * soft + ring
    return echo.astype(np.float32), _posterior_factor(mask, gain, rng)


def _to_bmode(rng: np.random.Generator, echo: np.ndarray) -> np.ndarray:
    """Speckle, depth attenuation, noise floor, log compression and a light blur -> uint8 ``(H, W)``."""
    h = echo.shape[0]
    depth = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    attenuation = np.exp(-rng.uniform(1.0, 1.8) * depth)
    speckle = _rayleigh_speckle(rng, echo.shape, (1.1, 2.2))
    noise_floor = 0.015 * _rayleigh_speckle(rng, echo.shape, (0.7, 0.7))
    amplitude = echo * attenuation * speckle + noise_floor
    reference = float(np.percentile(amplitude, 99.8))
    dynamic_range = rng.uniform(40.0, 50.0)  # dB
    db = 20.0 * np.log10(np.maximum(amplitude / reference, 1e-6))
    gray = np.clip((db + dynamic_range) / dynamic_range, 0.0, 1.0) ** rng.uniform(1.6, 2.4) * 255.0
    gray = ndimage.gaussian_filter(gray, 0.8)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    """Validate ``(H, W)``."""
    if len(size) != 2 or any(int(s) != s or s < _MIN_SIDE for s in size):
        raise RadVLSMInputError(f"must be two integers >= {_MIN_SIDE} (H, W), got {size!r}", "size")
    return int(size[0]), int(size[1])


def _bbox(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` of the non-zero pixels (0-based, inclusive extent)."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def generate_phantom_image(
    rng: np.random.Generator,
    pathology: str,
    size: tuple[int, int],
    *,
    histology: str | None = None,
    birads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One synthetic breast-ultrasound image with exactly one lesion.

    Args:
        rng: random generator (the only source of randomness; same state -> same output).
        pathology: ``"benign"`` or ``"malignant"``.
        size: ``(H, W)`` in pixels, each at least 64.
        histology: one of ``HISTOLOGIES[pathology]``; drawn from ``rng`` when ``None``.
        birads: BI-RADS category 2-5; drawn from ``rng`` (benign mostly 2-3, malignant 4-5) when ``None``.

    Returns:
        ``(image, mask, meta)``: uint8 ``(H, W)`` grayscale image, uint8 ``(H, W)`` mask in ``{0, 255}``
        and ``{"bbox": [x, y, w, h], "birads": int, "histology": str, "pathology": str}`` where
        ``bbox`` is the mask's bounding box (0-based pixels).

    Raises:
        RadVLSMInputError: unknown pathology or histology, BI-RADS outside 2-5 or a bad size.
    """
    if pathology not in PATHOLOGIES:
        raise RadVLSMInputError(f"must be one of {PATHOLOGIES}, got {pathology!r}", "pathology")
    h, w = _check_size(size)
    if histology is None:
        histology = str(rng.choice(HISTOLOGIES[pathology], p=_HISTOLOGY_P[pathology]))
    elif histology not in HISTOLOGIES[pathology]:
        raise RadVLSMInputError(
            f"must be one of {HISTOLOGIES[pathology]} for {pathology}, got {histology!r}", "histology"
        )
    if birads is None:
        birads = int(rng.choice(_BIRADS[pathology][0], p=_BIRADS[pathology][1]))
    elif birads not in (2, 3, 4, 5):
        raise RadVLSMInputError(f"must be 2, 3, 4 or 5, got {birads!r}", "birads")

    tissue, _ = _tissue(rng, (h, w))
    params = _shape_params(rng, pathology, histology)
    cx, cy, scale = _place_lesion(rng, params, (h, w), pathology)
    mask = _rasterise(params, (cx, cy), scale, (h, w))
    echo, posterior = _apply_lesion(rng, tissue, mask, pathology, histology)
    image = _to_bmode(rng, echo * posterior)
    meta = {"bbox": _bbox(mask), "birads": int(birads), "histology": histology, "pathology": pathology}
    return image, mask.astype(np.uint8) * 255, meta


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------
def _check_dataset_args(n_images: int, seed: int, malignant_fraction: float) -> None:
    """Validate the dataset parameters."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise RadVLSMInputError(f"must be a positive integer, got {n_images!r}", "n_images")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RadVLSMInputError(f"must be a non-negative integer, got {seed!r}", "seed")
    if not 0.0 <= float(malignant_fraction) <= 1.0:
        raise RadVLSMInputError(f"must be in [0, 1], got {malignant_fraction!r}", "malignant_fraction")


def _case_pathologies(rng: np.random.Generator, n_cases: int, malignant_fraction: float) -> list[str]:
    """Pathology per case: ``round(fraction * n_cases)`` malignant, both present when ``0 < fraction < 1``."""
    n_malignant = round(malignant_fraction * n_cases)
    if n_cases >= 2 and 0.0 < malignant_fraction < 1.0:
        n_malignant = min(max(n_malignant, 1), n_cases - 1)
    labels = ["malignant"] * n_malignant + ["benign"] * (n_cases - n_malignant)
    return [labels[i] for i in rng.permutation(n_cases)]


def _case_sides(case_index: int, n_cases: int, n_images: int) -> tuple[str, ...]:
    """``("l", "r")`` for every case except a last single-image case (``("s",)``) when ``n_images`` is odd."""
    return ("s",) if case_index == n_cases - 1 and n_images % 2 else ("l", "r")


def _previous_phantom_ids(out: Path) -> list[str]:
    """IDs listed in an existing phantom CSV in ``out``; raises if the CSV is not a phantom's."""
    csv_path = out / CSV_NAME
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if any(row.get("Device") != DEVICE for row in rows):
        raise RadVLSMInputError(
            f"holds a {CSV_NAME} that was not written by the phantom generator; refusing to overwrite it", str(out)
        )
    return [row["ID"] for row in rows if "ID" in row]


def _save_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 ``(H, W)`` array as an 8-bit grayscale PNG (deterministic bytes)."""
    Image.fromarray(array, mode="L").save(path, format="PNG", optimize=False)


def _write_case(
    seed_seq: np.random.SeedSequence, case: int, pathology: str, sides: tuple[str, ...], out: Path
) -> list[dict[str, Any]]:
    """Generate and save the images of one case; returns its CSV rows."""
    rng = np.random.default_rng(seed_seq)
    histology = str(rng.choice(HISTOLOGIES[pathology], p=_HISTOLOGY_P[pathology]))
    birads = int(rng.choice(_BIRADS[pathology][0], p=_BIRADS[pathology][1]))
    height = int(rng.integers(_SIZE_RANGE[0], _SIZE_RANGE[1] + 1))
    width = int(rng.integers(_SIZE_RANGE[0], _SIZE_RANGE[1] + 1))
    rows = []
    for side in sides:
        w = int(np.clip(width + rng.integers(-3, 4), *_SIZE_RANGE))
        image, mask, meta = generate_phantom_image(rng, pathology, (height, w), histology=histology, birads=birads)
        image_id = f"bus_{case:04d}-{side}"
        _save_png(image, out / "Images" / f"{image_id}.png")
        _save_png(mask, out / "Masks" / f"mask_{case:04d}-{side}.png")
        bbox = "[" + ",".join(str(v) for v in meta["bbox"]) + "]"
        rows.append(
            {
                "ID": image_id,
                "Case": case,
                "Histology": histology,
                "Pathology": pathology,
                "BIRADS": birads,
                "Device": DEVICE,
                "Width": w,
                "Height": height,
                "Side": _SIDE_NAMES[side],
                "BBOX": bbox,
            }
        )
    return rows


def _remove_stale(out: Path, old_ids: list[str], new_ids: set[str]) -> None:
    """Delete files of a previous phantom in ``out`` that the new one does not list."""
    for image_id in old_ids:
        if image_id in new_ids:
            continue
        for path in (out / "Images" / f"{image_id}.png", out / "Masks" / f"{image_id.replace('bus_', 'mask_', 1)}.png"):
            if _PHANTOM_FILE.match(path.name) and path.is_file():
                path.unlink()


def _manifest(n_images: int, seed: int, malignant_fraction: float) -> dict[str, Any]:
    """The generation parameters stored in ``phantom.json``."""
    return {
        "generator": "radvlsm.data.phantom",
        "version": GENERATOR_VERSION,
        "n_images": n_images,
        "seed": seed,
        "malignant_fraction": float(malignant_fraction),
    }


def generate_phantom_dataset(
    out_dir: str | Path, n_images: int = 60, seed: int = 0, malignant_fraction: float = 0.4
) -> Path:
    """Write a phantom dataset in the BUS-BRA layout (see the module docstring).

    Images come in cases of two (sides ``l``/``r``; a last single ``s`` image when ``n_images`` is
    odd) sharing pathology, histology, BI-RADS and image height. The CSV is written after all
    images and ``phantom.json`` after the CSV, so a folder without them is incomplete. The same
    arguments give byte-identical files. A previous phantom in ``out_dir`` is replaced (its stale
    files removed); a folder holding any other ``bus_data.csv`` (e.g. real data) is refused.

    Args:
        out_dir: output folder (created).
        n_images: number of images, at least 1.
        seed: non-negative random seed.
        malignant_fraction: share of malignant cases in ``[0, 1]`` (both classes kept when strictly between).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        RadVLSMInputError: bad arguments, or ``out_dir`` holds a non-phantom ``bus_data.csv``.
    """
    _check_dataset_args(n_images, seed, malignant_fraction)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RadVLSMInputError("exists and is not a folder", str(out))
    old_ids = _previous_phantom_ids(out)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    (out / CSV_NAME).unlink(missing_ok=True)
    (out / "Images").mkdir(parents=True, exist_ok=True)
    (out / "Masks").mkdir(parents=True, exist_ok=True)

    n_cases = math.ceil(n_images / 2)
    split_seed, *case_seeds = np.random.SeedSequence(seed).spawn(n_cases + 1)
    pathologies = _case_pathologies(np.random.default_rng(split_seed), n_cases, malignant_fraction)
    logger.info("Generating %d phantom images (%d cases, seed %d) in %s", n_images, n_cases, seed, out)
    rows: list[dict[str, Any]] = []
    for index in range(n_cases):
        sides = _case_sides(index, n_cases, n_images)
        rows.extend(_write_case(case_seeds[index], index + 1, pathologies[index], sides, out))
        logger.debug("phantom case %d/%d (%s) written", index + 1, n_cases, pathologies[index])
        if (index + 1) % 10 == 0:
            logger.info("phantom: %d/%d images written", len(rows), n_images)

    with (out / CSV_NAME).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _remove_stale(out, old_ids, {row["ID"] for row in rows})
    (out / MANIFEST_NAME).write_text(json.dumps(_manifest(n_images, seed, malignant_fraction), indent=2) + "\n")
    logger.info("Phantom dataset complete: %d images in %s", len(rows), out)
    return out


def _is_complete(out: Path, expected: dict[str, Any]) -> bool:
    """Whether ``out`` holds a finished phantom made with exactly ``expected`` parameters."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        with (out / CSV_NAME).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return False
    if manifest != expected or len(rows) != expected["n_images"]:
        return False
    return all(
        (out / "Images" / f"{row['ID']}.png").is_file()
        and (out / "Masks" / f"{row['ID'].replace('bus_', 'mask_', 1)}.png").is_file()
        for row in rows
    )


def ensure_phantom_dataset(
    out_dir: str | Path, n_images: int = 60, seed: int = 0, malignant_fraction: float = 0.4
) -> str:
    """Make sure ``out_dir`` holds a complete phantom with these parameters; generate it otherwise.

    Idempotent: an existing complete dataset (``phantom.json`` matching, CSV and every file
    present) is left untouched.

    Args:
        out_dir: dataset folder.
        n_images: number of images.
        seed: random seed.
        malignant_fraction: share of malignant cases.

    Returns:
        The folder path as ``str`` (what the bundle config passes on as the dataset root).
    """
    _check_dataset_args(n_images, seed, malignant_fraction)
    out = Path(out_dir)
    if _is_complete(out, _manifest(n_images, seed, malignant_fraction)):
        logger.info("Phantom dataset already present in %s", out)
    else:
        generate_phantom_dataset(out, n_images=n_images, seed=seed, malignant_fraction=malignant_fraction)
    return str(out)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments of ``python -m radvlsm.data.phantom``."""
    parser = argparse.ArgumentParser(
        prog="python -m radvlsm.data.phantom",
        description="Write a synthetic breast-ultrasound phantom dataset in the BUS-BRA layout "
        "(Images/, Masks/, bus_data.csv, phantom.json).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--n-images", type=int, default=60, help="number of images (default: 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--malignant-fraction", type=float, default=0.4, help="share of malignant cases (default: 0.4)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching dataset exists")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point.

    Args:
        argv: arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        Process exit status (0 on success, 2 on bad input).
    """
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.force:
            generate_phantom_dataset(args.out, args.n_images, args.seed, args.malignant_fraction)
        else:
            ensure_phantom_dataset(args.out, args.n_images, args.seed, args.malignant_fraction)
    except RadVLSMInputError as err:
        logger.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
