"""Reading one 2D image for the model and shaping the predicted mask back to the image's file geometry.

Images are read the way the bundle reads them (MONAI ``LoadImaged`` with the PIL, pydicom and nibabel
readers, then :class:`radvlsm.data.transforms.To2DGrayd`), after a header check that turns unreadable
files and 3D volumes into :class:`radvlsm.errors.RadVLSMInputError` with a message naming the file.
MONAI readers give arrays x-first (``(W, H[, 1])``); the model works on ``(H, W)``; the mask written back
for MONAI Label's writer is x-first again, with the image's spatial shape and affine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data import MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.transforms import EnsureChannelFirstd, LoadImaged

from radvlsm.data.transforms import To2DGrayd, pil_to_intensity
from radvlsm.data.validation import image_shape
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

FLAT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class LoadedImage:
    """One image ready for the model, with what is needed to write a label back.

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
        """An ``(H, W)`` mask as a uint8 array of the file's spatial shape (x first), for MONAI Label's writer."""
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
    loader = LoadImaged("image", image_only=True)
    for reader in (PydicomReader(), NibabelReader(), PILReader(converter=pil_to_intensity)):
        loader.register(reader)
    return loader


def load_image_2d(path: str | Path, role: str = "image") -> LoadedImage:
    """Read a 2D image (PNG, JPEG, BMP, TIFF, DICOM, NIfTI) for the model.

    Args:
        path: the file.
        role: ``"image"`` or ``"label"``, used in messages.

    Raises:
        RadVLSMInputError: missing, empty or unreadable file, a 3D volume or time series, NaN pixels.
    """
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


def label_extension(image_path: str) -> str:
    """The file type of a returned label: PNG for flat images (JPEG is lossy), NIfTI for DICOM/NIfTI."""
    name = image_path.lower()
    return ".png" if name.endswith(FLAT_SUFFIXES) else ".nii.gz"
