"""MONAI dictionary transforms for 2D breast ultrasound: load, one channel, [0, 1], longest side + pad, box.

Pipeline of :func:`get_transforms` (keys ``image`` and, except in ``infer`` mode, ``label``):

1. ``LoadImaged`` with PIL (PNG/JPEG/BMP), pydicom (DICOM), nibabel (NIfTI) and ITK (others). Every MONAI
   reader returns spatial axes x-first (``(W, H)``; PIL's ``reverse_indexing=True``), so :class:`To2DGrayd`
   swaps them back: rows are the image height from there on.
2. :class:`To2DGrayd`: ``(1, H, W)`` float32, RGB/RGBA -> luminance, 3D volumes and NaN -> error naming the file.
3. ``ScaleIntensityd`` min-max to [0, 1] (a constant image becomes zeros); label ``> 0.5`` -> {0, 1}.
4. :class:`LongestSidePadd`: longest side to ``image_size`` (area interpolation) and zero padding bottom/right
   (:class:`radvlsm.data.geometry.LongestSideGeometry`); records ``original_size`` ``(H, W)`` for
   :func:`invert_to_original`. The image is min-max scaled once more afterwards (LiteMedSAM normalises
   the resized image), so its maximum is exactly 1.
5. ``train`` only: left-right flip, small affine, gamma/contrast, speckle noise (image and label together).
6. :class:`MaskToBoxd`: ``box`` = lesion box ``x1, y1, x2, y2`` in the model frame (whole frame when empty).
7. Collation-safe metadata: None ``birads`` -> -1, None ``histology``/``device`` -> ``""``; ``bbox`` dropped.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    AsDiscreted,
    Compose,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandomizableTransform,
    RandScaleIntensityFixedMeand,
    ScaleIntensityd,
    ScaleIntensityRanged,
    Transform,
)
from monai.transforms.inverse import InvertibleTransform
from monai.utils import TraceKeys, convert_to_tensor
from PIL import Image
from scipy import ndimage

from radvlsm.data.geometry import LongestSideGeometry
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

MODES = ("train", "eval", "infer")
# RGB -> luminance weights (ITU-R 601-2, as PIL's convert("L")).
_LUMA = (0.299, 0.587, 0.114)


def pil_to_intensity(img: Image.Image) -> Image.Image:
    """PIL converter: palette, 1-bit, LA, CMYK and YCbCr images to ``L``/``RGB``/``RGBA`` pixel intensities."""
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    if img.mode in ("1", "LA"):
        return img.convert("L")
    if img.mode in ("CMYK", "YCbCr", "HSV", "LAB"):
        return img.convert("RGB")
    return img


def _source(img: Any, key: Hashable) -> str:
    """The file an image came from (MetaTensor metadata), else the key name."""
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", key))
    return str(key)


class To2DGrayd(MapTransform):
    """Loaded ``(C, X, Y[, 1...])`` arrays (x-first) to ``(1, H, W)`` float32 tensors.

    RGB/RGBA/LA channels become one (luminance; alpha ignored); trailing singleton dimensions are dropped;
    anything else beyond two spatial dimensions is rejected. The source file is kept under
    ``{key}_path`` (the spatial metadata no longer applies once resized).

    Args:
        keys: keys to convert.
        check_finite_keys: keys whose values must be finite (images; NaN/inf -> error naming the file).
        allow_missing_keys: skip absent keys.

    Raises:
        RadVLSMInputError: 3D volume or time series, unsupported channel count, NaN/inf values.
    """

    def __init__(
        self, keys: KeysCollection, check_finite_keys: Sequence[str] = ("image",), allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check_finite_keys = tuple(check_finite_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            source = _source(img, key)
            t = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(np.asarray(img))
            t = t.float()
            while t.ndim > 3 and t.shape[-1] == 1:
                t = t[..., 0]
            if t.ndim != 3:
                raise RadVLSMInputError(
                    f"has shape {tuple(t.shape[1:])} (a 3D volume or time series); a 2D image is expected", source
                )
            channels = t.shape[0]
            if channels in (3, 4):
                t = sum(w * t[c] for c, w in enumerate(_LUMA))[None]
            elif channels == 2:
                t = t[:1]
            elif channels != 1:
                raise RadVLSMInputError(f"has {channels} channels; expected grayscale, RGB or RGBA", source)
            if key in self.check_finite_keys and not torch.isfinite(t).all():
                raise RadVLSMInputError("contains NaN or infinite pixel values", source)
            t = t.transpose(-1, -2).contiguous()
            # keep the metadata (and the trace that invertible transforms push) on a MetaTensor input
            d[key] = MetaTensor(t, meta=dict(img.meta)) if isinstance(img, MetaTensor) else t
            d[f"{key}_path"] = source
        return d


def minmax_normalize(image: np.ndarray) -> np.ndarray:
    """Scale a 2D image to [0, 1] (a constant image becomes zeros).

    Raises:
        RadVLSMInputError: for non-finite values.
    """
    arr = np.asarray(image, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise RadVLSMInputError("image contains NaN or infinite values", "image")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo < 1e-8:
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 3|4)`` or ``(1, H, W)`` array to ``(H, W)`` float32.

    Raises:
        RadVLSMInputError: for anything that is not one 2D image.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        arr = rgb @ np.asarray(_LUMA, dtype=np.float32)
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise RadVLSMInputError(f"expected one 2D image, got an array of shape {tuple(np.shape(image))}", "image")
    if min(arr.shape) < 2:
        raise RadVLSMInputError(f"image of {arr.shape[0]}x{arr.shape[1]} pixels is too small", "image")
    return arr.astype(np.float32)


class ToModelFrame(Transform):
    """Array form of the model's image preprocessing (LiteMedSAM's): one 2D image -> ``(1, S, S)`` in [0, 1].

    Grayscale (colour to luminance), min-max to [0, 1], longest side to ``size`` (area interpolation when
    shrinking) and zero padding bottom/right. :meth:`geometry` gives the mapping of prompts and masks between
    the image and the frame.

    Args:
        size: side ``S`` of the square model frame (the image encoder's input size).
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def geometry(self, image: np.ndarray) -> LongestSideGeometry:
        """The original <-> model-frame mapping of ``image`` (``(H, W)`` or colour)."""
        return LongestSideGeometry(tuple(to_grayscale(image).shape), self.size)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` / ``(H, W, 3|4)`` / ``(1, H, W)`` -> ``(1, S, S)`` float32 tensor."""
        gray = to_grayscale(image)
        return LongestSideGeometry(tuple(gray.shape), self.size).image_to_model(minmax_normalize(gray))


class LongestSidePad(InvertibleTransform):
    """Array form: ``(C, H, W)`` -> ``(C, size, size)``, longest side to ``size`` then zero padding.

    Invertible the MONAI way: on a ``MetaTensor`` the original size is pushed onto ``applied_operations``,
    so :meth:`inverse` (and ``Invertd`` in a post-processing chain) restores the original ``(H, W)``.

    Args:
        size: side of the square model frame.
        mode: ``"area"`` for images (area when shrinking, bilinear when enlarging) or ``"nearest"`` for masks.
    """

    def __init__(self, size: int = 256, mode: str = "area") -> None:
        if mode not in ("area", "nearest"):
            raise RadVLSMInputError(f"mode must be 'area' or 'nearest', got {mode!r}", "mode")
        self.size = int(size)
        self.mode = mode

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Resize and pad ``(C, H, W)`` (or ``(H, W)``) to ``(C, size, size)``."""
        arr = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(np.asarray(img))
        geometry = LongestSideGeometry(tuple(int(s) for s in arr.shape[-2:]), self.size)
        out = geometry.image_to_model(arr) if self.mode == "area" else geometry.mask_to_model(arr)
        if isinstance(img, MetaTensor) and get_track_meta():
            out = MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
            self.push_transform(out, orig_size=geometry.original_size)
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """``(C, size, size)`` MetaTensor made by this transform -> ``(C, H, W)`` (nearest for masks).

        Soft maps (probabilities) are resized bilinearly when the forward mode was ``area``.
        """
        if not isinstance(data, MetaTensor):
            raise RadVLSMInputError("inverse needs the MetaTensor this transform returned", "LongestSidePad")
        info = self.pop_transform(data)
        mode = "nearest" if self.mode == "nearest" else "bilinear"
        back = invert_to_original(data.as_tensor(), info[TraceKeys.ORIG_SIZE], mode=mode)
        return MetaTensor(back, meta=dict(data.meta), applied_operations=list(data.applied_operations))


def invert_to_original(
    frame: torch.Tensor, original_size: Sequence[int] | torch.Tensor, mode: str = "nearest"
) -> torch.Tensor:
    """Map a model-frame map back onto the original image (crop the padding, resize).

    Args:
        frame: ``(..., S, S)`` mask, probabilities or logits in the model frame.
        original_size: ``(H, W)`` of the original image (the ``original_size`` transform output).
        mode: ``"nearest"`` for labels, ``"bilinear"`` for soft maps.

    Returns:
        ``(..., H, W)`` tensor.
    """
    h, w = (int(s) for s in torch.as_tensor(original_size).reshape(-1)[:2].tolist())
    frame = torch.as_tensor(frame)
    if frame.shape[-1] != frame.shape[-2]:
        raise RadVLSMInputError(f"model-frame map must be square, got {tuple(frame.shape[-2:])}", "frame")
    return LongestSideGeometry((h, w), int(frame.shape[-1])).model_to_original(frame, mode=mode)


class LongestSidePadd(MapTransform, InvertibleTransform):
    """Dict form of :class:`LongestSidePad`; records ``original_size`` ``(H, W)`` of ``ref_key``.

    Invertible: ``Invertd(keys="pred", transform=<the Compose>, orig_keys="image")`` restores the original size.

    Args:
        keys: keys to resize (images and masks).
        size: side of the square model frame.
        mode: one mode per key (``"area"`` images, ``"nearest"`` masks) or one for all.
        ref_key: key whose size is recorded; every other key must have the same size.
        original_size_key: where ``(H, W)`` goes (int64 tensor ``(2,)``).
        allow_missing_keys: skip absent keys (e.g. no label).

    Raises:
        RadVLSMInputError: a key of another size than ``ref_key`` (names the file).
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: int = 256,
        mode: str | Sequence[str] = ("area", "nearest"),
        ref_key: str = "image",
        original_size_key: str = "original_size",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        if len(modes) != len(self.keys):
            raise RadVLSMInputError(f"{len(modes)} modes for {len(self.keys)} keys", "mode")
        self.pads = {k: LongestSidePad(size, m) for k, m in zip(self.keys, modes, strict=True)}
        self.ref_key = ref_key
        self.original_size_key = original_size_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = tuple(int(s) for s in d[self.ref_key].shape[-2:])
        for key in self.key_iterator(d):
            shape = tuple(int(s) for s in d[key].shape[-2:])
            if shape != ref:
                source = d.get(f"{key}_path", key)
                raise RadVLSMInputError(f"is {shape[0]}x{shape[1]} (HxW) but the image is {ref[0]}x{ref[1]}", source)
            d[key] = self.pads[key](d[key])
        d[self.original_size_key] = torch.tensor(ref, dtype=torch.int64)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Each key back to its original ``(H, W)`` (see :meth:`LongestSidePad.inverse`)."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.pads[key].inverse(d[key])
        return d


def mask_to_box(mask: torch.Tensor | None, size: int) -> torch.Tensor:
    """Box of the foreground of a ``(1, S, S)`` mask, ``x1, y1, x2, y2`` (exclusive end), float32 ``(4,)``.

    The whole frame ``[0, 0, S, S]`` when the mask is absent or empty.
    """
    if mask is not None:
        m = mask.as_tensor() if isinstance(mask, MetaTensor) else torch.as_tensor(mask)
        ys, xs = torch.nonzero(m.reshape(m.shape[-2:]) > 0.5, as_tuple=True)
        if ys.numel():
            return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).to(torch.float32)
    return torch.tensor([0.0, 0.0, float(size), float(size)])


class MaskToBoxd(MapTransform):
    """Add ``box_key``: the lesion box of ``keys[0]`` (a mask) in the model frame, see :func:`mask_to_box`.

    Args:
        keys: the mask key (may be absent: whole-frame box).
        box_key: output key.
        ref_key: image key giving the frame size.
    """

    def __init__(self, keys: KeysCollection = "label", box_key: str = "box", ref_key: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.box_key = box_key
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.box_key] = mask_to_box(d.get(self.keys[0]), int(d[self.ref_key].shape[-1]))
        return d


class FillNoned(MapTransform):
    """Replace None (or absent) metadata by collatable placeholders.

    Args:
        defaults: key -> placeholder (e.g. ``{"birads": -1, "histology": ""}``).
    """

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        super().__init__(list(defaults), allow_missing_keys=True)
        self.defaults = dict(defaults)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, value in self.defaults.items():
            if d.get(key) is None:
                d[key] = value
        return d


class RandSpeckleNoised(RandomizableTransform, MapTransform):
    """Multiplicative (speckle-like) Gaussian noise ``x * (1 + std * n)``, clipped to [0, 1].

    Args:
        keys: image keys.
        prob: probability of applying it.
        std: noise standard deviation (relative to the pixel value).
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.1, std: float = 0.1) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        self.std = float(std)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key])
            noise = torch.as_tensor(self.R.standard_normal(tuple(img.shape)), dtype=img.dtype)
            d[key] = (img * (1.0 + self.std * noise)).clamp(0.0, 1.0)
        return d


class UltrasoundCompose(Compose):
    """``Compose`` that re-raises a :class:`RadVLSMInputError` from a step as itself.

    MONAI wraps every failing step in ``RuntimeError("applying transform ...")``; the user needs the
    message naming the file, so that error is unwrapped (other errors keep MONAI's wrapping).
    """

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(input_, *args, **kwargs)
        except RuntimeError as err:
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, RadVLSMInputError):
                cause = cause.__cause__
            if cause is None:
                raise
            raise cause from None


class LoadUltrasoundd(LoadImaged):
    """``LoadImaged`` choosing the reader by file suffix; PIL (palette, 16-bit and CMYK images converted to
    intensities), pydicom and nibabel are tried before ITK.

    Args:
        keys: keys holding file paths.
        allow_missing_keys: skip absent keys (e.g. no label at inference).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, image_only=True, allow_missing_keys=allow_missing_keys)
        for reader in (PydicomReader(), NibabelReader(), PILReader(converter=pil_to_intensity)):
            self.register(reader)


def _augmentations(keys: list[str]) -> list[Transform]:
    modes = ["bilinear", "nearest"][: len(keys)]
    return [
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandAffined(
            keys,
            prob=0.5,
            rotate_range=math.pi / 18,
            scale_range=(0.1, 0.1),
            translate_range=(10, 10),
            mode=modes,
            padding_mode="zeros",
        ),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
        RandScaleIntensityFixedMeand("image", prob=0.3, factors=0.2),
        RandSpeckleNoised("image", prob=0.3, std=0.15),
        ScaleIntensityRanged("image", a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
        AsDiscreted("label", threshold=0.5, allow_missing_keys=True),
    ]


def get_transforms(
    mode: str, image_size: int = 256, augment: bool | None = None, track_meta: bool = False
) -> UltrasoundCompose:
    """The dictionary pipeline for one mode.

    Args:
        mode: ``"train"`` (image + label, augmentation on by default), ``"eval"`` (image + label) or
            ``"infer"`` (image only; a ``label`` entry is dropped).
        image_size: side ``S`` of the square model frame.
        augment: force augmentation on/off (default: only for ``"train"``).
        track_meta: return ``MetaTensor``s that carry the transform trace, so that ``Invertd`` (with this
            Compose) maps model-frame predictions back to the original size; plain tensors otherwise.

    Returns:
        :class:`UltrasoundCompose` mapping an item dict (``image``/``label`` paths plus metadata) to
        ``image`` ``(1, S, S)`` float32 in [0, 1], ``label`` ``(1, S, S)`` float32 {0, 1} (not in ``infer``),
        ``box`` ``(4,)`` float32 ``x1, y1, x2, y2``, ``original_size`` ``(2,)`` int64 ``(H, W)``, ``image_path``
        str, and the item's other keys (``diagnosis``, ``text``, ``id``, ``case``, ...) with None replaced.
    """
    if mode not in MODES:
        raise RadVLSMInputError(f"unknown mode {mode!r}; expected one of {MODES}", "mode")
    if int(image_size) < 8:
        raise RadVLSMInputError(f"image_size must be at least 8, got {image_size}", "image_size")
    augment = (mode == "train") if augment is None else bool(augment)
    keys = ["image"] if mode == "infer" else ["image", "label"]
    steps: list[Transform] = []
    if mode == "infer":
        steps.append(DeleteItemsd(["label"]))
    steps += [
        LoadUltrasoundd(keys),
        EnsureChannelFirstd(keys),
        To2DGrayd(keys),
        ScaleIntensityd("image", minv=0.0, maxv=1.0),
        AsDiscreted("label", threshold=0.5, allow_missing_keys=True),
        LongestSidePadd(keys, size=image_size, mode=["area", "nearest"][: len(keys)]),
        ScaleIntensityd("image", minv=0.0, maxv=1.0),  # LiteMedSAM normalises the resized image
    ]
    if augment:
        steps += _augmentations(keys)
    steps += [
        MaskToBoxd("label", box_key="box", ref_key="image"),
        FillNoned({"birads": -1, "histology": "", "device": ""}),
        DeleteItemsd(["bbox"]),
        EnsureTyped(keys, dtype=torch.float32, track_meta=track_meta),
    ]
    return UltrasoundCompose(steps)


class UltrasoundViewd(MapTransform):
    """A reproducible augmented *view* of an image and its mask, chosen by the item's ``view`` index.

    View 0 is the image itself; view ``v > 0`` applies crop or zoom-out (scale), left-right flip, blur,
    gamma, contrast/brightness and correlated speckle, drawn from a generator seeded by ``(seed, v, id)``.
    Deterministic per item, so it can sit in a ``CacheDataset``'s cached part and each view's embedding is
    computed once (training on cached embeddings with a frozen encoder), while different views of an image,
    and different images, see different scanner-like changes. Run it at the original size, before
    :class:`LongestSidePadd`.

    Args:
        keys: ``image`` then, optionally, ``label`` (``(1, H, W)``; the label gets the geometric changes only).
        view_key: item key holding the view index (absent: view 0).
        id_key: item key that names the image (seeds its views).
        seed: global seed.
        crop: smallest crop side, as a fraction of the image side (the crop keeps the lesion's box inside).
        zoom_out: largest zero border added on each side, as a fraction of the image side.
        gamma: ``(low, high)`` gamma range (log-uniform).
        contrast: largest relative contrast change.
        brightness: largest brightness shift.
        speckle: largest multiplicative noise standard deviation.
        blur: largest Gaussian blur sigma in pixels (applied to half of the views).
    """

    def __init__(
        self,
        keys: KeysCollection,
        view_key: str,
        id_key: str,
        seed: int,
        crop: float,
        zoom_out: float,
        gamma: Sequence[float],
        contrast: float,
        brightness: float,
        speckle: float,
        blur: float,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        if not 0 < crop <= 1 or zoom_out < 0 or len(gamma) != 2 or not 0 < gamma[0] <= gamma[1]:
            raise RadVLSMInputError(
                f"need 0 < crop <= 1, zoom_out >= 0, 0 < gamma[0] <= gamma[1]; got {crop}, {zoom_out}, {gamma}",
                "UltrasoundViewd",
            )
        self.view_key, self.id_key, self.seed = view_key, id_key, int(seed)
        self.crop, self.zoom_out = float(crop), float(zoom_out)
        self.gamma = (float(gamma[0]), float(gamma[1]))
        self.contrast, self.brightness = float(contrast), float(brightness)
        self.speckle, self.blur = float(speckle), float(blur)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        view = int(d.get(self.view_key, 0) or 0)
        if view == 0:
            return d
        name = str(d.get(self.id_key, ""))
        rng = np.random.default_rng([self.seed, view, zlib.crc32(name.encode())])
        keys = [k for k in self.key_iterator(d)]
        image_key, label_key = keys[0], (keys[1] if len(keys) > 1 else None)
        img = convert_to_tensor(d[image_key], dtype=torch.float32, track_meta=False)
        lab = None if label_key is None else convert_to_tensor(d[label_key], dtype=torch.float32, track_meta=False)
        h, w = img.shape[-2:]
        # scale: crop around the lesion (zoom in) or a zero border (zoom out)
        if rng.random() < 0.6:
            ch = max(8, round(h * rng.uniform(self.crop, 1.0)))
            cw = max(8, round(w * rng.uniform(self.crop, 1.0)))
            if lab is not None and bool(lab.any()):
                ys, xs = torch.nonzero(lab[0] > 0.5, as_tuple=True)
                y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
                ch, cw = max(ch, min(h, y1 - y0 + 8)), max(cw, min(w, x1 - x0 + 8))
                lo_y, lo_x = max(0, y1 + 4 - ch), max(0, x1 + 4 - cw)  # the lesion stays inside the crop
                top = int(rng.integers(lo_y, max(lo_y, min(y0 - 4, h - ch)) + 1))
                left = int(rng.integers(lo_x, max(lo_x, min(x0 - 4, w - cw)) + 1))
            else:
                top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            top, left = min(max(top, 0), h - ch), min(max(left, 0), w - cw)
            img = img[..., top : top + ch, left : left + cw]
            lab = None if lab is None else lab[..., top : top + ch, left : left + cw]
        else:
            pad = [round(s * rng.uniform(0, self.zoom_out)) for s in (w, w, h, h)]
            img = torch.nn.functional.pad(img, pad)
            lab = None if lab is None else torch.nn.functional.pad(lab, pad)
        if rng.random() < 0.5:
            img, lab = img.flip(-1), (None if lab is None else lab.flip(-1))
        arr = img.numpy().astype(np.float32)
        if rng.random() < 0.5:
            arr = ndimage.gaussian_filter(arr, sigma=(0, rng.uniform(0.3, self.blur), rng.uniform(0.3, self.blur)))
        noise = ndimage.gaussian_filter(rng.standard_normal(arr.shape).astype(np.float32), sigma=(0, 1.0, 1.0))
        noise /= max(float(noise.std()), 1e-6)
        arr = arr * (1.0 + rng.uniform(0, self.speckle) * noise)
        arr = np.clip(arr, 0.0, 1.0) ** float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        arr = (arr - 0.5) * (1 + rng.uniform(-self.contrast, self.contrast)) + 0.5
        arr = np.clip(arr + rng.uniform(-self.brightness, self.brightness), 0.0, 1.0)
        d[image_key] = torch.from_numpy(arr.astype(np.float32))
        if label_key is not None:
            d[label_key] = lab
        return d
