"""Mask-grounded radiomics: cached pyradiomics extraction off the autograd path.

The features themselves come from pyradiomics (``radiomics.featureextractor.RadiomicsFeatureExtractor``) with the
parameters in ``configs/radiomics_params.yaml``; this module only prepares the 2D frames, orders and sanitises the
outputs and caches them. The trainable modules that standardise them and fuse them with the visual diagnosis
logits are in :mod:`radvlsm.models.fusion`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the conventional SimpleITK alias)
import torch

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

# the bundle's copy; the model gets its path from ``network_def#radiomics_params``
DEFAULT_PARAMS_FILE = (
    Path(__file__).resolve().parents[2] / "bundles" / "radvlsm_breast_us" / "configs" / "radiomics_params.yaml"
)

_DRY_RUN_SIZE = 32  # side of the synthetic image used to learn the feature names at init
_DRY_RUN_RADIUS = 10


def _synthetic_disk(size: int = _DRY_RUN_SIZE, radius: int = _DRY_RUN_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic textured image with a centred disk mask, for the dry run.

    Args:
        size: image side in pixels.
        radius: disk radius in pixels.

    Returns:
        ``(image, mask)``: float64 ``(size, size)`` in ``[0, 255]`` and bool ``(size, size)``.
    """
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    c = (size - 1) / 2.0
    mask = (yy - c) ** 2 + (xx - c) ** 2 <= radius**2
    image = 127.5 + 60.0 * np.sin(xx / 2.0) * np.cos(yy / 3.0) + 40.0 * mask
    return image, mask


class RadiomicsExtractor:
    """pyradiomics features of one lesion mask on a 2D frame, with a per-instance LRU cache.

    Frames are passed to SimpleITK as single-slice volumes of numpy shape ``(1, H, W)`` (SimpleITK size
    ``(W, H, 1)``), which is what ``force2D: true, force2Ddimension: 0`` in the parameter file expects.

    Args:
        params_file: pyradiomics parameter YAML; default the bundle's ``configs/radiomics_params.yaml``.
        cache_size: number of results kept in the LRU cache (0 disables caching).

    Raises:
        RadVLSMInputError: the parameter file is missing or ``cache_size`` is negative.
    """

    def __init__(self, params_file: str | Path | None = None, cache_size: int = 1024) -> None:
        from radiomics import featureextractor

        # Quiet pyradiomics' own (chatty) logger, and pykwalify's "validation.valid" line when it checks the
        # parameter file, here rather than at import, so importing has no side effects.
        logging.getLogger("radiomics").setLevel(logging.ERROR)
        logging.getLogger("pykwalify.core").setLevel(logging.WARNING)
        path = Path(params_file) if params_file is not None else DEFAULT_PARAMS_FILE
        if not path.is_file():
            raise RadVLSMInputError(f"pyradiomics parameter file not found: {path}", source="params_file")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise RadVLSMInputError(f"must be a non-negative int, got {cache_size!r}", source="cache_size")
        self.params_file = path
        self.cache_size = cache_size
        self._extractor = featureextractor.RadiomicsFeatureExtractor(str(path))
        self._cache: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.min_roi_size = int(self._extractor.settings.get("minimumROISize") or 1)
        image, mask = _synthetic_disk()
        raw = self._execute(image, mask, (1.0, 1.0))
        self._feature_names: tuple[str, ...] = tuple(sorted(raw))
        if not self._feature_names:
            raise RadVLSMInputError("enables no features (dry run returned none)", source=str(path))
        logger.debug("radiomics extractor ready: %d features from %s", len(self._feature_names), path)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Sorted feature names (``R`` of them), fixed at init; the order of every returned vector."""
        return self._feature_names

    @property
    def n_features(self) -> int:
        """Number of features ``R``."""
        return len(self._feature_names)

    def cache_info(self) -> dict[str, int]:
        """Current number of cached results and the capacity.

        Returns:
            ``{"size": int, "capacity": int}``.
        """
        return {"size": len(self._cache), "capacity": self.cache_size}

    def clear_cache(self) -> None:
        """Empty the LRU cache."""
        self._cache.clear()

    def _execute(self, image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]) -> dict[str, float]:
        """Run pyradiomics on prepared arrays; drop diagnostics, cast to float.

        Args:
            image: float64 ``(H, W)`` in ``[0, 255]``.
            mask: bool ``(H, W)``.
            spacing: ``(row, col)`` pixel spacing.

        Returns:
            ``{name: value}`` for every non-diagnostic output (unordered, values possibly non-finite).
        """
        sitk_image = sitk.GetImageFromArray(image[None].astype(np.float64))
        sitk_mask = sitk.GetImageFromArray(mask[None].astype(np.uint8))
        sitk_spacing = (float(spacing[1]), float(spacing[0]), 1.0)  # SimpleITK order: x (col), y (row), z
        sitk_image.SetSpacing(sitk_spacing)
        sitk_mask.SetSpacing(sitk_spacing)
        out = self._extractor.execute(sitk_image, sitk_mask, label=1)
        return {k: float(np.asarray(v, dtype=np.float64)) for k, v in out.items() if not k.startswith("diagnostics_")}

    def _zeros(self) -> dict[str, float]:
        return dict.fromkeys(self._feature_names, 0.0)

    @staticmethod
    def _validate(
        image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """Check shapes/values and convert to ``(float64 image, bool mask, spacing)``."""
        image = np.asarray(image)
        mask = np.asarray(mask)
        if image.ndim != 2:
            raise RadVLSMInputError(f"expected a 2D (H, W) array, got shape {image.shape}", source="image")
        if image.size == 0:
            raise RadVLSMInputError("is empty", source="image")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_):
            raise RadVLSMInputError(f"must be numeric, got dtype {image.dtype}", source="image")
        if mask.shape != image.shape:
            raise RadVLSMInputError(f"shape {mask.shape} does not match image shape {image.shape}", source="mask")
        if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_):
            raise RadVLSMInputError(f"must be bool or 0/1, got dtype {mask.dtype}", source="mask")
        if mask.dtype != np.bool_ and not np.isin(mask, (0, 1)).all():
            raise RadVLSMInputError("must be bool or contain only 0 and 1", source="mask")
        image_f = image.astype(np.float64)
        if not np.isfinite(image_f).all():
            raise RadVLSMInputError("contains NaN or infinite values", source="image")
        try:
            sp = tuple(float(s) for s in spacing)
        except (TypeError, ValueError) as exc:
            raise RadVLSMInputError(f"must be two positive numbers, got {spacing!r}", source="spacing") from exc
        if len(sp) != 2 or not all(math.isfinite(s) and s > 0 for s in sp):
            raise RadVLSMInputError(f"must be two positive numbers (row, col), got {spacing!r}", source="spacing")
        return image_f, mask.astype(bool), (sp[0], sp[1])

    @staticmethod
    def _rescale(image: np.ndarray) -> np.ndarray:
        """Min-max rescale to float64 ``[0, 255]``; a constant image becomes all zeros."""
        lo, hi = float(image.min()), float(image.max())
        if hi - lo <= 0:
            return np.zeros_like(image, dtype=np.float64)
        return (image - lo) * (255.0 / (hi - lo))

    @staticmethod
    def _key(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]) -> str:
        h = hashlib.blake2b(digest_size=20)
        h.update(f"{image.dtype.str}|{image.shape}|{spacing!r}".encode())
        h.update(np.ascontiguousarray(image).tobytes())
        h.update(np.packbits(mask).tobytes())
        return h.hexdigest()

    def extract(self, image: np.ndarray, mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0)) -> dict[str, float]:
        """Radiomics of the lesion ``mask`` on ``image``.

        Args:
            image: ``(H, W)`` array of any numeric dtype; min-max rescaled to ``[0, 255]`` float before extraction.
            mask: ``(H, W)`` bool or 0/1 array, the lesion.
            spacing: ``(row, col)`` pixel spacing (shape features are in these units).

        Returns:
            ``{name: value}`` with the keys of :attr:`feature_names` in that order; all finite (NaN/inf -> 0).
            An empty or too small mask (fewer than ``minimumROISize`` pixels, or under 2 px in height or width)
            gives all zeros and a logged warning.

        Raises:
            RadVLSMInputError: wrong shapes/dtypes, non-finite image values, or invalid spacing.
        """
        image_f, mask_b, sp = self._validate(image, mask, spacing)
        key = self._key(np.asarray(image), mask_b, sp)
        if self.cache_size and key in self._cache:
            self._cache.move_to_end(key)
            return dict(self._cache[key])

        result = self._compute(image_f, mask_b, sp)
        if self.cache_size:
            self._cache[key] = dict(result)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def _compute(self, image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]) -> dict[str, float]:
        n_pixels = int(mask.sum())
        if n_pixels == 0:
            logger.warning("radiomics: empty mask, returning %d zero features", self.n_features)
            return self._zeros()
        rows, cols = np.nonzero(mask)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        if n_pixels <= self.min_roi_size or height < 2 or width < 2:
            logger.warning(
                "radiomics: mask too small (%d px, %dx%d bbox; need > %d px and >= 2x2), returning zeros",
                n_pixels,
                height,
                width,
                self.min_roi_size,
            )
            return self._zeros()
        try:
            raw = self._execute(self._rescale(image), mask, spacing)
        except (ValueError, RuntimeError) as exc:
            logger.warning("radiomics: pyradiomics failed on this mask (%s), returning zeros", exc)
            return self._zeros()
        missing = [n for n in self._feature_names if n not in raw]
        if missing:
            logger.warning("radiomics: %d features not computed (e.g. %s), set to 0", len(missing), missing[0])
        result: dict[str, float] = {}
        n_bad = 0
        for name in self._feature_names:
            value = raw.get(name, 0.0)
            if not math.isfinite(value):
                n_bad += 1
                value = 0.0
            result[name] = value
        if n_bad:
            logger.debug("radiomics: %d non-finite features set to 0", n_bad)
        return result

    def extract_batch(
        self, images: torch.Tensor, masks: torch.Tensor, spacing: Sequence[float] = (1.0, 1.0)
    ) -> torch.Tensor:
        """Radiomics for a batch, off the autograd path.

        Args:
            images: ``(B, 1, H, W)`` tensor (any float/int dtype, any device).
            masks: ``(B, 1, H, W)`` probabilities or binary masks; thresholded at 0.5 (``> 0.5`` is lesion).
            spacing: ``(row, col)`` pixel spacing shared by the batch.

        Returns:
            ``(B, R)`` float32 CPU tensor in :attr:`feature_names` order, with ``requires_grad=False``.

        Raises:
            RadVLSMInputError: non-tensor inputs, wrong ranks or mismatched shapes.
        """
        for name, t in (("images", images), ("masks", masks)):
            if not isinstance(t, torch.Tensor):
                raise RadVLSMInputError(f"must be a torch.Tensor, got {type(t).__name__}", source=name)
            if t.ndim != 4 or t.shape[1] != 1:
                raise RadVLSMInputError(f"expected shape (B, 1, H, W), got {tuple(t.shape)}", source=name)
        if masks.shape != images.shape:
            raise RadVLSMInputError(
                f"shape {tuple(masks.shape)} does not match images {tuple(images.shape)}", source="masks"
            )
        with torch.no_grad():
            images_np = images.detach().to("cpu", torch.float64).numpy().copy()
            masks_np = (masks.detach().to("cpu", torch.float32) > 0.5).numpy().copy()
            rows = [
                list(self.extract(images_np[b, 0], masks_np[b, 0], spacing).values()) for b in range(images.shape[0])
            ]
        out = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.n_features)
        return torch.from_numpy(out)
