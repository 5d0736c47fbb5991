"""Visual-radiomics fusion: the trainable modules on top of :class:`radvlsm.models.radiomics.RadiomicsExtractor`.

:class:`RadiomicsStandardizer` z-scores the raw pyradiomics vector with statistics fitted on training features
(buffers, so they travel in ``model.pt`` as ``standardizer.mean``/``standardizer.std``);
:class:`VisualRadiomicsFusion` adds a gated MLP of ``[visual, standardised radiomics]`` to the visual diagnosis
logits (``fusion.*`` in ``model.pt``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from radvlsm.errors import RadVLSMInputError


class RadiomicsStandardizer(nn.Module):
    """Per-feature z-scoring with statistics fitted on training features, stored as buffers.

    Args:
        n_features: number of radiomics features ``R``.
        std_floor: lower bound on the fitted standard deviation (avoids division by ~0 for constant features).
        clip: outputs are clipped to ``[-clip, clip]``.
    """

    def __init__(self, n_features: int, std_floor: float = 1e-6, clip: float = 5.0) -> None:
        super().__init__()
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise RadVLSMInputError(f"must be a positive int, got {n_features!r}", source="n_features")
        if not std_floor > 0 or not clip > 0:
            raise RadVLSMInputError(f"must be positive, got std_floor={std_floor}, clip={clip}", source="std_floor")
        self.n_features = n_features
        self.std_floor = float(std_floor)
        self.clip = float(clip)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, features: torch.Tensor | np.ndarray) -> RadiomicsStandardizer:
        """Set ``mean``/``std`` from training features, ignoring NaN/inf entries.

        Args:
            features: ``(N, R)`` with ``N >= 1``. A column without finite values gets mean 0, std 1.

        Returns:
            ``self``.
        """
        x = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features or x.shape[0] < 1:
            raise RadVLSMInputError(
                f"expected shape (N>=1, {self.n_features}), got {tuple(x.shape)}", source="features"
            )
        finite = torch.isfinite(x)
        count = finite.sum(0)
        x0 = torch.where(finite, x, torch.zeros_like(x))
        mean = x0.sum(0) / count.clamp(min=1)
        var = torch.where(finite, (x - mean) ** 2, torch.zeros_like(x)).sum(0) / count.clamp(min=1)
        std = var.sqrt().clamp(min=self.std_floor)
        mean = torch.where(count > 0, mean, torch.zeros_like(mean))
        std = torch.where(count > 0, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise and clip.

        Args:
            x: ``(B, R)`` raw radiomics.

        Returns:
            ``(B, R)`` ``(x - mean) / std`` clipped to ``[-clip, clip]``; NaN inputs map to 0.
        """
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise RadVLSMInputError(f"expected shape (B, {self.n_features}), got {tuple(x.shape)}", source="x")
        z = (x.to(self.mean.dtype) - self.mean) / self.std
        z = torch.nan_to_num(z, nan=0.0, posinf=self.clip, neginf=-self.clip)
        return z.clamp(-self.clip, self.clip)


class VisualRadiomicsFusion(nn.Module):
    """Residual, gated fusion of visual features and standardised radiomics into diagnosis logits.

    ``logits = (visual_logits + tanh(alpha) * MLP([visual, radiomics_std])) / T`` with ``alpha`` initialised to 0, so
    an untrained head returns the visual logits exactly and radiomics only contribute as far as training opens the
    gate; the temperature ``T`` (1 until :meth:`calibrate`) makes the probability calibrated on validation images.

    Args:
        visual_dim: visual feature size ``C``.
        n_radiomics: radiomics feature size ``R``.
        hidden: MLP hidden width.
        n_classes: number of diagnosis classes (2: benign, malignant).
        dropout: dropout after the hidden layer.
    """

    def __init__(
        self, visual_dim: int, n_radiomics: int, hidden: int = 64, n_classes: int = 2, dropout: float = 0.1
    ) -> None:
        super().__init__()
        for name, value in (("visual_dim", visual_dim), ("n_radiomics", n_radiomics), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RadVLSMInputError(f"must be a positive int, got {value!r}", source=name)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise RadVLSMInputError(f"must be an int >= 2, got {n_classes!r}", source="n_classes")
        if not 0.0 <= dropout < 1.0:
            raise RadVLSMInputError(f"must be in [0, 1), got {dropout!r}", source="dropout")
        self.visual_dim = visual_dim
        self.n_radiomics = n_radiomics
        self.n_classes = n_classes
        self.mlp = nn.Sequential(
            nn.Linear(visual_dim + n_radiomics, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )
        self.gate_logit = nn.Parameter(torch.zeros(()))
        # temperature scaling of the fused logits, fitted on validation images (calibration); 0 = none
        self.register_buffer("log_temperature", torch.zeros(()))

    @property
    def gate(self) -> float:
        """Current gate ``tanh(alpha)`` in ``(-1, 1)`` (0 at init), for reporting."""
        return float(torch.tanh(self.gate_logit.detach()))

    def forward(self, visual: torch.Tensor, radiomics_std: torch.Tensor, visual_logits: torch.Tensor) -> torch.Tensor:
        """Fuse.

        Args:
            visual: ``(B, C)`` visual region embedding.
            radiomics_std: ``(B, R)`` standardised radiomics (see :class:`RadiomicsStandardizer`).
            visual_logits: ``(B, n_classes)`` logits of the visual diagnosis head.

        Returns:
            ``(B, n_classes)`` fused logits.
        """
        if visual.ndim != 2 or visual.shape[1] != self.visual_dim:
            raise RadVLSMInputError(
                f"expected shape (B, {self.visual_dim}), got {tuple(visual.shape)}", source="visual"
            )
        b = visual.shape[0]
        checks = (
            ("radiomics_std", radiomics_std, self.n_radiomics),
            ("visual_logits", visual_logits, self.n_classes),
        )
        for name, t, dim in checks:
            if t.ndim != 2 or t.shape != (b, dim):
                raise RadVLSMInputError(f"expected shape ({b}, {dim}), got {tuple(t.shape)}", source=name)
        x = torch.cat([visual, radiomics_std.to(visual.dtype)], dim=1)
        fused = visual_logits + torch.tanh(self.gate_logit) * self.mlp(x)
        return fused / self.log_temperature.exp()

    @torch.no_grad()
    def calibrate(self, fused_logits: torch.Tensor, labels: torch.Tensor) -> float:
        """Fit the temperature on held-out (validation) logits by minimising the negative log-likelihood.

        Args:
            fused_logits: ``(N, n_classes)`` outputs of this module at the current temperature.
            labels: ``(N,)`` class indices.

        Returns:
            the new temperature.
        """
        raw = fused_logits.double() * self.log_temperature.exp().double()
        grid = torch.linspace(-1.0, 2.0, 301, dtype=torch.float64)  # T in [0.37, 7.4]
        nll = torch.stack([nn.functional.cross_entropy(raw / t.exp(), labels) for t in grid])
        self.log_temperature.fill_(float(grid[int(nll.argmin())]))
        return float(self.log_temperature.exp())
