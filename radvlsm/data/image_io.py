"""The one 2D image reader of the library and the MONAI Label app, and the image-suffix sets.

Every model input is read by :func:`load_image_2d` / :func:`read_image_2d`: a header check
(:func:`radvlsm.data.validation.image_shape`: missing, zero-byte, unreadable, decompression-bomb and 3D/time
series files), then the bundle's own readers (MONAI ``LoadImaged`` with the PIL, pydicom and nibabel readers
and :class:`radvlsm.data.transforms.To2DGrayd`: RGB/RGBA -> luminance, 16-bit kept, NaN refused). Each
failure is a :class:`radvlsm.errors.RadVLSMInputError` whose message names the file. MONAI readers give arrays
x-first (``(W, H[, 1])``); the result is ``(H, W)``, and :class:`LoadedImage` keeps the file's spatial shape
and affine so a mask can be written back in the file's geometry.

The suffix constants and :func:`list_images` are import-light (MONAI loads on the first read).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radvlsm.data.validation import image_shape
from radvlsm.errors import RadVLSMInputError

if TYPE_CHECKING:
    from monai.transforms import LoadImaged

logger = logging.getLogger(__name__)

FLAT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""2D picture formats (PIL): dataset folders, folder inference, labels returned as PNG."""
MEDICAL_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".nrrd", ".mha")
"""Medical-image formats (read through pydicom, nibabel or ITK)."""
IMAGE_SUFFIXES = FLAT_SUFFIXES + MEDICAL_SUFFIXES
"""Everything :func:`load_image_2d` reads."""
STUDY_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz")
"""What the MONAI Label app's local datastore lists as studies."""
DICOM_SOURCE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""What ``radvlsm dicom from-images`` converts to DICOM US."""
LOSSY_SUFFIXES = (".jpg", ".jpeg")
"""Lossy-compressed sources (flagged as such in DICOM)."""


def matching_suffix(path: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> str | None:
    """The entry of ``suffixes`` that the file name ends with (case-insensitive; ``.nii.gz`` whole), else ``None``."""
    name = Path(path).name.lower()
    return next((s for s in sorted(suffixes, key=len, reverse=True) if name.endswith(s)), None)


def image_stem(path: str | Path) -> str:
    """The file name without its image suffix (``a.nii.gz`` -> ``a``; an unknown suffix is dropped as usual)."""
    name = Path(path).name
    suffix = matching_suffix(name)
    return name[: -len(suffix)] if suffix else Path(name).stem


def list_images(folder: str | Path, suffixes: tuple[str, ...] = FLAT_SUFFIXES) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted by name; empty when there are none.

    Raises:
        RadVLSMInputError: ``folder`` is not a folder.
    """
    path = Path(folder)
    if not path.is_dir():
        raise RadVLSMInputError("not a folder", str(path))
    return sorted(p for p in path.iterdir() if p.is_file() and matching_suffix(p, suffixes))


@dataclass
class LoadedImage:
    """One image ready for the model, with what is needed to write a label back in the file's geometry.

    Args:
        gray: ``(H, W)`` float32 intensities.
        spatial_shape: the file's spatial shape as MONAI reads it (x first, e.g. ``(W, H)`` or ``(W, H, 1)``).
        affine: the file's affine (``None`` when unknown).
        path: the file.
    """

    gray: np.ndarray
    spatial_shape: tuple[int, ...]
    affine: np.ndarray | None
    path: str

    @property
    def size_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.gray.shape[0]), int(self.gray.shape[1])

    def to_file_geometry(self, mask_hw: np.ndarray) -> np.ndarray:
        """An ``(H, W)`` mask as a uint8 array of the file's spatial shape (x first), e.g. for MONAI Label's writer."""
        return np.ascontiguousarray(np.asarray(mask_hw, dtype=np.uint8).T).reshape(self.spatial_shape)

    def from_file_geometry(self, label: np.ndarray, source: str) -> np.ndarray:
        """A label read like an image (``(H, W)``), checked against this image's size.

        Raises:
            RadVLSMInputError: the label's size differs from the image's.
        """
        if tuple(label.shape) != self.size_hw:
            raise RadVLSMInputError(
                f"label is {label.shape[0]}x{label.shape[1]} (HxW) but the image is "
                f"{self.size_hw[0]}x{self.size_hw[1]}",
                source,
            )
        return label


def _loader() -> LoadImaged:
    from monai.data import NibabelReader, PILReader, PydicomReader
    from monai.transforms import LoadImaged

    from radvlsm.data.transforms import pil_to_intensity

    loader = LoadImaged("image", image_only=True)
    for reader in (PydicomReader(), NibabelReader(), PILReader(converter=pil_to_intensity)):
        loader.register(reader)
    return loader


def load_image_2d(path: str | Path, role: str = "image") -> LoadedImage:
    """Read a 2D image (PNG, JPEG, BMP, TIFF, DICOM, NIfTI, NRRD, MHA) for the model.

    Args:
        path: the file.
        role: ``"image"``, ``"mask"`` or ``"label"``, used in messages.

    Returns:
        the ``(H, W)`` float32 intensities (colour -> luminance, 16-bit values kept) with the file geometry.

    Raises:
        RadVLSMInputError: missing, empty or unreadable file, too large to decode safely, a 3D volume or
            time series, NaN or infinite pixels.
    """
    from monai.data import MetaTensor
    from monai.transforms import EnsureChannelFirstd

    from radvlsm.data.transforms import To2DGrayd

    source = str(path)
    image_shape(source, role)  # header check: clear messages for unreadable files and 3D volumes
    try:
        data = EnsureChannelFirstd("image")(_loader()({"image": source}))
    except RadVLSMInputError:
        raise
    except Exception as exc:  # MONAI wraps every reader failure in its own exception types
        raise RadVLSMInputError(f"{role} cannot be decoded ({type(exc).__name__}: {exc})", source) from exc
    image = data["image"]
    affine = np.asarray(image.affine) if isinstance(image, MetaTensor) else None
    spatial = tuple(int(s) for s in image.shape[1:])
    gray = To2DGrayd("image", check_finite_keys=("image",))(data)["image"][0].numpy().astype(np.float32)
    return LoadedImage(gray=gray, spatial_shape=spatial, affine=affine, path=source)


def read_image_2d(path: str | Path, role: str = "image") -> np.ndarray:
    """``(H, W)`` float32 intensities of a 2D image file; see :func:`load_image_2d` for formats and errors."""
    return load_image_2d(path, role).gray
