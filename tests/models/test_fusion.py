"""Visual-radiomics fusion modules: the standardiser's fit and buffers, the gated fusion head, model.pt key names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.fusion import RadiomicsStandardizer, VisualRadiomicsFusion

SHIPPED = Path(__file__).resolve().parents[2] / "bundles" / "radvlsm_breast_us" / "models" / "model.pt"


def test_standardizer_fit_forward_state_dict() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 4, generator=gen) * torch.tensor([1.0, 10.0, 0.1, 1.0]) + torch.tensor([0, 5, -2, 3.0])
    feats[:, 3] = 3.0  # constant column -> std floor, standardised to 0
    feats[7, 0] = float("nan")
    std = RadiomicsStandardizer(4).fit(feats)
    finite0 = feats[:, 0][torch.isfinite(feats[:, 0])]
    assert std.mean[0].item() == pytest.approx(finite0.mean().item(), abs=1e-5)
    assert std.std[0].item() == pytest.approx(finite0.std(unbiased=False).item(), rel=1e-4)
    assert std.std[3].item() == pytest.approx(1e-6)
    z = std(feats)
    assert z.shape == (50, 4) and torch.isfinite(z).all()
    assert z.abs().max() <= 5.0
    assert torch.allclose(z[:, 1].mean(), torch.tensor(0.0), atol=1e-4) and torch.all(z[:, 3] == 0)
    assert std(torch.tensor([[1e6, 0.0, 0.0, 3.0]]))[0, 0] == 5.0
    sd = std.state_dict()
    assert set(sd) == {"mean", "std"}
    fresh = RadiomicsStandardizer(4)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh(feats), z)
    with pytest.raises(RadVLSMInputError, match="features"):
        std.fit(torch.zeros(5, 3))
    with pytest.raises(RadVLSMInputError, match="x"):
        std(torch.zeros(5, 3))


def test_fusion_equals_visual_logits_at_init_and_learns() -> None:
    torch.manual_seed(0)
    fusion = VisualRadiomicsFusion(visual_dim=16, n_radiomics=8, hidden=32)
    visual, rad, logits = torch.randn(4, 16), torch.randn(4, 8), torch.randn(4, 2)
    assert fusion.gate == 0.0
    for mode in (fusion.eval, fusion.train):
        mode()
        assert torch.equal(fusion(visual, rad, logits), logits)
    out = fusion(visual, rad, logits)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 0, 1])).backward()
    assert fusion.gate_logit.grad is not None and fusion.gate_logit.grad.abs().item() > 0
    assert all(p.grad is not None for p in fusion.parameters())
    # Once the gate opens, gradients reach the MLP weights too.
    fusion.zero_grad()
    with torch.no_grad():
        fusion.gate_logit.fill_(0.5)
    fusion.eval()
    out = fusion(visual, rad, logits)
    assert not torch.equal(out, logits) and fusion.gate == pytest.approx(math.tanh(0.5))
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())
    with pytest.raises(RadVLSMInputError, match="radiomics_std"):
        fusion(visual, torch.randn(4, 7), logits)
    with pytest.raises(RadVLSMInputError, match="visual"):
        fusion(torch.randn(4, 15), rad, logits)


def test_shipped_weights_keep_the_standardizer_and_fusion_key_names() -> None:
    """The shipped model.pt loads into these modules as they are named in RadVLSM (``standardizer.``, ``fusion.``)."""
    if not SHIPPED.is_file():
        pytest.skip("no shipped model.pt")
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    std_state = {k.removeprefix("standardizer."): v for k, v in state.items() if k.startswith("standardizer.")}
    fusion_state = {k.removeprefix("fusion."): v for k, v in state.items() if k.startswith("fusion.")}
    n_features = std_state["mean"].shape[0]
    standardizer = RadiomicsStandardizer(n_features)
    standardizer.load_state_dict(std_state)  # strict: same keys, same shapes
    visual_dim = fusion_state["mlp.0.weight"].shape[1] - n_features
    fusion = VisualRadiomicsFusion(visual_dim, n_features, hidden=fusion_state["mlp.0.weight"].shape[0])
    fusion.load_state_dict(fusion_state)


def test_calibration_fits_the_temperature_of_overconfident_logits() -> None:
    torch.manual_seed(0)
    fusion = VisualRadiomicsFusion(4, 3, hidden=8)
    labels = torch.randint(0, 2, (400,))
    margin = torch.where(labels == 1, 1.0, -1.0) + torch.randn(400) * 1.5  # noisy evidence
    logits = torch.stack([-margin, margin], 1) * 4.0  # four times too confident
    before = torch.nn.functional.cross_entropy(logits, labels)
    t = fusion.calibrate(logits, labels)
    assert 2.0 < t < 8.0
    after = torch.nn.functional.cross_entropy(logits / t, labels)
    assert after < before
    fusion.eval()
    x, r, v = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 2)
    expected = (v + torch.tanh(fusion.gate_logit) * fusion.mlp(torch.cat([x, r], 1))) / t
    torch.testing.assert_close(fusion(x, r, v), expected)
