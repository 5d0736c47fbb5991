"""Longest-side resize with zero padding (LiteMedSAM's input frame) and its inverse.

The model works on a square ``size x size`` frame: the image's longest side is scaled to ``size``
(area interpolation when shrinking), the other side keeps the aspect ratio, and the bottom/right
is zero-padded. :class:`LongestSideGeometry` carries the numbers that map boxes, points and masks
between the original image and that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from radvlsm.errors import RadVLSMInputError


@dataclass(frozen=True)
class LongestSideGeometry:
    """Mapping between an ``(H, W)`` image and the padded ``size x size`` model frame.

    Args:
        original_size: ``(H, W)`` of the original image.
        size: side of the square model frame.
    """

    original_size: tuple[int, int]
    size: int = 256

    def __post_init__(self) -> None:
        h, w = self.original_size
        if h < 1 or w < 1:
            raise RadVLSMInputError(f"image size must be positive, got {h}x{w}", "original_size")

    @property
    def scale(self) -> float:
        """Factor from original pixels to model-frame pixels."""
        return self.size / max(self.original_size)

    @property
    def resized_size(self) -> tuple[int, int]:
        """``(h, w)`` of the image inside the frame, before padding."""
        h, w = self.original_size
        return max(1, round(h * self.scale)), max(1, round(w * self.scale))

    def image_to_model(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Resize and pad an image to the model frame.

        Args:
            image: ``(C, H, W)`` or ``(H, W)`` array.

        Returns:
            ``(C, size, size)`` float tensor; area interpolation when shrinking, bilinear when enlarging.
        """
        t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float()
        if t.ndim == 2:
            t = t[None]
        if tuple(t.shape[-2:]) != tuple(self.original_size):
            raise RadVLSMInputError(f"image is {tuple(t.shape[-2:])}, geometry expects {self.original_size}", "image")
        mode = "area" if self.scale <= 1 else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        resized = F.interpolate(t[None], size=self.resized_size, mode=mode, **kwargs)[0]
        out = resized.new_zeros((t.shape[0], self.size, self.size))
        out[:, : self.resized_size[0], : self.resized_size[1]] = resized
        return out

    def mask_to_model(self, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Pixel-centre nearest resize and pad of a ``(H, W)`` or ``(C, H, W)`` mask to ``(C, size, size)``."""
        t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).float()
        if t.ndim == 2:
            t = t[None]
        resized = F.interpolate(t[None], size=self.resized_size, mode="nearest-exact")[0]
        out = resized.new_zeros((t.shape[0], self.size, self.size))
        out[:, : self.resized_size[0], : self.resized_size[1]] = resized
        return out

    def model_to_original(self, frame: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Crop the padding and resize a model-frame map back to the original size.

        Args:
            frame: ``(..., size, size)`` map (mask probabilities, logits or a response map).
            mode: interpolation mode (``bilinear`` for soft maps, ``nearest`` for labels; nearest uses pixel
                centres, ``nearest-exact``, so a mask survives the round trip without a one-pixel shift).

        Returns:
            ``(..., H, W)`` tensor.
        """
        lead = frame.shape[:-2]
        h, w = self.resized_size
        crop = frame[..., :h, :w].reshape(-1, 1, h, w).float()
        mode = "nearest-exact" if mode == "nearest" else mode
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        out = F.interpolate(crop, size=self.original_size, mode=mode, **kwargs)
        return out.reshape(*lead, *self.original_size)

    def boxes_to_model(self, boxes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(..., 4)`` x1, y1, x2, y2 boxes from original pixels to the model frame."""
        return torch.as_tensor(boxes, dtype=torch.float32) * self.scale

    def boxes_to_original(self, boxes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(..., 4)`` x1, y1, x2, y2 boxes from the model frame to original pixels."""
        return torch.as_tensor(boxes, dtype=torch.float32) / self.scale

    def points_to_model(self, points: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` x, y points from original pixels to the model frame."""
        return torch.as_tensor(points, dtype=torch.float32) * self.scale

    def points_to_original(self, points: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` x, y points from the model frame to original pixels."""
        return torch.as_tensor(points, dtype=torch.float32) / self.scale
