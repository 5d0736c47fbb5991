"""Per-item checks: readable 2D image, mask of the same size, non-empty mask on lesion images.

The cheap header checks (file exists, non-empty, format, size, frame count) run first; the pixel checks
(full decode, which catches truncated files, and the mask content) only with ``check_pixels=True``.
PIL handles PNG/JPEG/BMP/TIFF; other formats (NIfTI, DICOM, NRRD, MHA) go through SimpleITK's header
reader and MONAI's ``LoadImage`` for pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.Image import DecompressionBombError
from SimpleITK import ImageFileReader

from radvlsm.data.records import PATHOLOGIES
from radvlsm.errors import DataValidationError

logger = logging.getLogger(__name__)

LESION_PATHOLOGIES = ("benign", "malignant")


def _pil_header(path: Path) -> tuple[tuple[int, int], int] | None:
    """``((H, W), n_frames)`` from PIL, None when PIL does not know the format."""
    try:
        with Image.open(path) as img:
            return (img.height, img.width), int(getattr(img, "n_frames", 1))
    except UnidentifiedImageError:
        return None


def _medical_header(path: Path) -> tuple[tuple[int, ...], int]:
    """``(spatial shape as (H, W[, D...]), n_components)`` from SimpleITK's header reader."""
    reader = ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise DataValidationError("not a readable image (unknown format or corrupt header)", str(path)) from err
    size = tuple(int(s) for s in reader.GetSize())  # x, y[, z...]
    shape = (size[1], size[0], *size[2:]) if len(size) >= 2 else size
    return shape, int(reader.GetNumberOfComponents())


def image_shape(path: str | Path, role: str = "image") -> tuple[int, int]:
    """Header check of one file: exists, non-empty, readable, a single 2D frame.

    Args:
        path: the image or mask file.
        role: ``"image"`` or ``"mask"`` (used in messages).

    Returns:
        ``(H, W)`` of the file.

    Raises:
        DataValidationError: missing, zero-byte or unreadable file, or a 3D volume / time series.
    """
    p = Path(path)
    if not p.is_file():
        raise DataValidationError(f"{role} file not found", str(p))
    if p.stat().st_size == 0:
        raise DataValidationError(f"{role} file is empty (zero bytes)", str(p))
    try:
        header = _pil_header(p)
    except DecompressionBombError as err:
        raise DataValidationError(f"{role} is too large to decode safely ({err})", str(p)) from err
    except OSError as err:
        raise DataValidationError(f"{role} is not a readable image ({err})", str(p)) from err
    if header is not None:
        hw, frames = header
        if frames > 1:
            raise DataValidationError(f"{role} has {frames} frames (a 3D volume or time series); 2D expected", str(p))
        return hw
    shape, _ = _medical_header(p)
    extra = [s for s in shape[2:] if s > 1]
    if len(shape) < 2 or extra:
        raise DataValidationError(f"{role} has shape {shape} (a 3D volume or time series); 2D expected", str(p))
    return shape[0], shape[1]


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask file into a boolean ``(H, W)`` array (any channel > 0 is foreground).

    Raises:
        DataValidationError: the file cannot be decoded (e.g. truncated).
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            arr = np.asarray(img)
    except UnidentifiedImageError:
        arr = _load_with_monai(p)
    except (OSError, DecompressionBombError) as err:
        raise DataValidationError(f"mask cannot be decoded ({err})", str(p)) from err
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.any(axis=-1) if arr.shape[-1] in (2, 3, 4) else arr[..., 0]
    return arr > 0


def _load_with_monai(path: Path) -> np.ndarray:
    """Pixels of a non-PIL file as ``(H, W[, ...])`` through MONAI's ``LoadImage`` (readers give x, y first)."""
    from monai.transforms import LoadImage

    try:
        arr = np.asarray(LoadImage(image_only=True)(str(path)))
    except Exception as err:  # MONAI wraps every reader failure in its own exception types
        raise DataValidationError(f"cannot be decoded ({err})", str(path)) from err
    arr = np.squeeze(arr)
    return np.swapaxes(arr, 0, 1) if arr.ndim >= 2 else arr


def _decode_image(path: Path) -> None:
    try:
        with Image.open(path) as img:
            img.load()
    except UnidentifiedImageError:
        _load_with_monai(path)
    except (OSError, DecompressionBombError) as err:
        raise DataValidationError(f"image cannot be decoded, truncated or corrupt ({err})", str(path)) from err


def mask_bbox(mask: np.ndarray) -> list[int] | None:
    """``[x, y, w, h]`` (0-based, ``w = x_max - x_min + 1``) of a boolean ``(H, W)`` mask; None when empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def validate_item(item: Mapping[str, Any], check_pixels: bool = True) -> None:
    """Check one datalist item; raise on the first problem.

    Args:
        item: dict with ``image`` and usually ``label`` paths and ``pathology``.
        check_pixels: also decode both files (truncation) and check the mask is non-empty on lesion images.

    Raises:
        DataValidationError: naming the file (or item ID) and the problem: unreadable / zero-byte image,
            3D volume or time series, mask of another size, empty mask on a benign/malignant image,
            unknown pathology.
    """
    name = str(item.get("id") or item.get("image"))
    if "image" not in item or not item["image"]:
        raise DataValidationError("item has no 'image' path", name)
    pathology = item.get("pathology")
    if pathology is not None and pathology not in PATHOLOGIES:
        raise DataValidationError(f"unknown pathology {pathology!r}; expected one of {PATHOLOGIES}", name)
    image = Path(item["image"])
    hw = image_shape(image, "image")
    label = item.get("label")
    if label:
        mask_hw = image_shape(label, "mask")
        if mask_hw != hw:
            raise DataValidationError(
                f"mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but the image {image} is {hw[0]}x{hw[1]}", str(label)
            )
    if not check_pixels:
        return
    _decode_image(image)
    if label:
        mask = read_mask(label)
        if pathology in LESION_PATHOLOGIES and not mask.any():
            raise DataValidationError(f"mask is empty but the image is {pathology} (a lesion is expected)", str(label))


def finish_item(item: dict, validate: bool) -> dict:
    """Validate an item (when asked) and fill its ``bbox`` from the mask.

    Raises:
        DataValidationError: the item fails :func:`validate_item` or its mask cannot be read.
    """
    if validate:
        validate_item(item, check_pixels=True)
    item["bbox"] = mask_bbox(read_mask(item["label"]))
    return item
