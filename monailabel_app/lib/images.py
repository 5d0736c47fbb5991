"""Reading one 2D image for the model and shaping the predicted mask back to the image's file geometry.

The reader is the library's (:mod:`radvlsm.data.image_io`, the one the bundle and the CLI use): a header
check that turns unreadable files and 3D volumes into :class:`radvlsm.errors.RadVLSMInputError` with a
message naming the file, then MONAI ``LoadImaged`` with the PIL, pydicom and nibabel readers. The mask
written back for MONAI Label's writer is x-first again, with the image's spatial shape and affine
(:meth:`LoadedImage.to_file_geometry`).
"""

from __future__ import annotations

from radvlsm.data.image_io import FLAT_SUFFIXES, LoadedImage, load_image_2d, matching_suffix

__all__ = ["FLAT_SUFFIXES", "LoadedImage", "label_extension", "load_image_2d"]


def label_extension(image_path: str) -> str:
    """The file type of a returned label: PNG for flat images (JPEG is lossy), NIfTI for DICOM/NIfTI."""
    return ".png" if matching_suffix(image_path, FLAT_SUFFIXES) else ".nii.gz"
