"""Diagnosis head: shapes for per-candidate and fused embeddings, eval determinism, bad input."""

from __future__ import annotations

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.diagnosis import DiagnosisHead


def test_shapes() -> None:
    head = DiagnosisHead(in_dim=32, hidden=16)
    assert head(torch.randn(2, 6, 32)).shape == (2, 6, 2)
    assert head(torch.randn(2, 32)).shape == (2, 2)
    assert DiagnosisHead(32, n_classes=3)(torch.randn(4, 32)).shape == (4, 3)


def test_per_candidate_matches_fused_path_in_eval() -> None:
    head = DiagnosisHead(in_dim=8, hidden=4, dropout=0.5).eval()
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(head(x)[:, 2], head(x[:, 2]))


def test_learns_a_separable_toy_problem() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    y = (x[:, 0] > 0).long()
    head = DiagnosisHead(in_dim=8, hidden=16, dropout=0.0)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float((head(x).argmax(-1) == y).float().mean()) > 0.9


def test_bad_input_raises() -> None:
    with pytest.raises(RadVLSMInputError, match="region_emb"):
        DiagnosisHead(8)(torch.randn(2, 7))
    with pytest.raises(RadVLSMInputError, match="DiagnosisHead"):
        DiagnosisHead(8, dropout=1.0)
