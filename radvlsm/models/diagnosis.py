"""Benign/malignant diagnosis head on lesion region embeddings."""

from __future__ import annotations

import logging

import torch
from torch import nn

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)


class DiagnosisHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear on the last dimension.

    Args:
        in_dim: region embedding size ``C``.
        hidden: hidden width.
        n_classes: output classes (2: benign 0, malignant 1).
        dropout: dropout probability after the hidden layer.
    """

    def __init__(self, in_dim: int, hidden: int = 128, n_classes: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if min(in_dim, hidden, n_classes) < 1 or not 0.0 <= dropout < 1.0:
            raise RadVLSMInputError(
                f"need positive sizes and 0 <= dropout < 1, got in_dim={in_dim}, hidden={hidden}, "
                f"n_classes={n_classes}, dropout={dropout}",
                "DiagnosisHead",
            )
        self.in_dim = in_dim
        self.n_classes = n_classes
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, region_emb: torch.Tensor) -> torch.Tensor:
        """Diagnosis logits.

        Args:
            region_emb: ``(B, K, C)`` or ``(B, C)``.

        Returns:
            ``(B, K, n_classes)`` or ``(B, n_classes)``.
        """
        if region_emb.ndim not in (2, 3) or region_emb.shape[-1] != self.in_dim:
            raise RadVLSMInputError(
                f"expected (B, {self.in_dim}) or (B, K, {self.in_dim}), got {tuple(region_emb.shape)}", "region_emb"
            )
        return self.net(region_emb)
