"""Lesion focusing: logits, response maps, upsampling, Grad-CAM and the supervised focus loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.align import SemanticAligner
from radvlsm.models.focus import LesionFocus, focus_loss, grad_cam, minmax_per_image

E = 16


def test_logits_are_scaled_cosine_plus_bias() -> None:
    torch.manual_seed(0)
    focus = LesionFocus(init_temperature=0.1)
    patches, prompt = torch.randn(2, E, 4, 4), torch.randn(E)
    logits = focus(patches, prompt)
    assert logits.shape == (2, 1, 4, 4)
    cos = F.cosine_similarity(patches, prompt[None, :, None, None], dim=1)
    torch.testing.assert_close(logits[:, 0], cos / 0.1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(focus(patches, prompt[None].expand(2, -1)), logits)
    with torch.no_grad():
        focus.bias.fill_(1.5)
    torch.testing.assert_close(focus(patches, prompt), logits + 1.5)


def test_learnable_flag() -> None:
    assert {n for n, _ in LesionFocus().named_parameters()} == {"log_scale", "bias"}
    fixed = LesionFocus(learnable=False)
    assert list(fixed.parameters()) == []
    assert math.isclose(float(fixed.log_scale.exp()), 1 / 0.07, rel_tol=1e-5)


def test_response_map_range_and_minmax() -> None:
    torch.manual_seed(0)
    focus = LesionFocus()
    patches, prompt = torch.randn(3, E, 5, 5), torch.randn(3, E)
    cam = focus.response_map(patches, prompt).detach()
    assert cam.shape == (3, 1, 5, 5) and float(cam.min()) >= 0 and float(cam.max()) <= 1
    norm = focus.response_map(patches, prompt, minmax=True).detach()
    torch.testing.assert_close(norm.flatten(1).min(1).values, torch.zeros(3))
    torch.testing.assert_close(norm.flatten(1).max(1).values, torch.ones(3))
    assert float(minmax_per_image(torch.full((1, 1, 2, 2), 0.3)).abs().max()) == 0.0


def test_upsample_shape() -> None:
    cam = torch.rand(2, 1, 16, 16)
    assert LesionFocus.upsample(cam, 64).shape == (2, 1, 64, 64)
    assert LesionFocus.upsample(cam, (32, 48)).shape == (2, 1, 32, 48)


def test_bad_inputs_raise() -> None:
    focus = LesionFocus()
    with pytest.raises(RadVLSMInputError, match="prompt_emb"):
        focus(torch.randn(2, E, 4, 4), torch.randn(E + 1))
    with pytest.raises(RadVLSMInputError, match="patch_emb"):
        focus(torch.randn(E, 4, 4), torch.randn(E))
    with pytest.raises(RadVLSMInputError, match="init_temperature"):
        LesionFocus(init_temperature=0.0)
    with pytest.raises(RadVLSMInputError, match="mask"):
        focus_loss(torch.randn(2, 1, 4, 4), torch.ones(3, 1, 16, 16))


def test_grad_cam_highlights_the_contributing_region() -> None:
    feats = torch.zeros(1, 4, 8, 8)
    feats[0, 0, 2:4, 5:7] = 1.0
    feats.requires_grad_(True)
    score = (feats[:, 0] * 3.0).sum() - feats[:, 1].sum()
    cam = grad_cam(score, feats)
    assert cam.shape == (1, 1, 8, 8) and not cam.requires_grad
    assert float(cam.max()) == pytest.approx(1.0) and float(cam.min()) >= 0.0
    assert float(cam[0, 0, 2:4, 5:7].min()) == pytest.approx(1.0)
    assert float(cam.sum()) == pytest.approx(4.0)
    with pytest.raises(RadVLSMInputError, match="score"):
        grad_cam(feats.sum(dim=(1, 2, 3)).repeat(2), feats)
    with pytest.raises(RadVLSMInputError, match="feats"):
        grad_cam(score, feats.detach())


def test_focus_loss_prefers_the_truth() -> None:
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:8] = 1
    target = F.interpolate(mask, size=(4, 4), mode="area")
    good = focus_loss((target * 2 - 1) * 10, mask)
    bad = focus_loss((0.5 - target) * 10, mask)
    assert good.ndim == 0 and float(good) < 0.1 < float(bad)


def test_focus_loss_decreases_when_training_a_toy_focus() -> None:
    torch.manual_seed(0)
    c, dt = 8, 6
    mask = torch.zeros(4, 1, 32, 32)
    for i in range(4):
        mask[i, :, 4 * i : 4 * i + 12, 8:20] = 1
    lesion_dir, tissue_dir = torch.randn(c), torch.randn(c)
    grid = F.interpolate(mask, size=(8, 8), mode="area")
    feats = grid * lesion_dir[None, :, None, None] + (1 - grid) * tissue_dir[None, :, None, None]
    feats = feats + 0.2 * torch.randn_like(feats)
    aligner, focus, prompt = SemanticAligner(c, dt, E), LesionFocus(), torch.randn(1, dt)
    params = [*aligner.parameters(), *focus.parameters()]
    opt = torch.optim.Adam(params, lr=2e-2)
    losses = []
    for _ in range(40):
        loss = focus_loss(focus(aligner.project_patches(feats), aligner.project_text(prompt)[0]), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_text_conditioned_focus_starts_as_the_similarity_map_and_listens_to_the_prompt() -> None:
    from radvlsm.models.focus import TextConditionedFocus

    torch.manual_seed(0)
    focus = TextConditionedFocus(image_dim=8, prompt_dim=6, hidden=16, layers=2, context_features=())
    emb, patches = torch.randn(2, 8, 5, 7), torch.randn(2, 6, 5, 7)
    prompt = torch.randn(6)
    out = focus(emb, patches, prompt)
    assert out.shape == (2, 1, 10, 14)
    sim = LesionFocus.upsample(focus.similarity(patches, prompt), (10, 14))
    torch.testing.assert_close(out, F.interpolate(focus.similarity(patches, prompt), scale_factor=2, mode="bilinear"))
    assert sim.shape == out.shape
    # one training step on a mask moves the dense correction; then the prompt changes the map (FiLM)
    opt = torch.optim.SGD(focus.parameters(), lr=0.5)
    target = torch.zeros(2, 1, 10, 14)
    target[..., 2:6, 3:9] = 1
    for _ in range(3):
        opt.zero_grad()
        focus_loss(focus(emb, patches, prompt), target).backward()
        opt.step()
    assert focus.head.weight.abs().sum() > 0 and focus.film.weight.abs().sum() > 0
    assert not torch.allclose(focus(emb, patches, prompt), focus(emb, patches, -prompt))
    with pytest.raises(RadVLSMInputError):
        focus(emb, torch.randn(2, 6, 4, 4), prompt)


@pytest.mark.parametrize("context", [(), (8, 8, 16, 16, 32, 8)])
def test_text_conditioned_focus_context_unet_sees_the_whole_frame(context: tuple[int, ...]) -> None:
    """Receptive field: with the context U-Net the map at one corner depends on the far corner; the 3x3 blocks
    alone do not reach it. Group norms (image-wide statistics) are replaced by identities, so only convolutions
    connect pixels; He-initialised so that the signal does not fade through the un-normalised layers."""
    from radvlsm.models.focus import TextConditionedFocus

    torch.manual_seed(0)
    focus = TextConditionedFocus(image_dim=8, prompt_dim=6, hidden=8, layers=1, context_features=context)
    for module in list(focus.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.GroupNorm):
                setattr(module, name, torch.nn.Identity())
            if isinstance(child, torch.nn.Conv2d | torch.nn.ConvTranspose2d):  # the head too: no zero correction
                torch.nn.init.kaiming_normal_(child.weight)
    emb, patches, prompt = torch.randn(1, 8, 16, 16), torch.randn(1, 6, 16, 16), torch.randn(6)
    far = emb.clone()
    far[..., -2:, -2:] += 5.0  # change the embedding only at the bottom-right corner
    with torch.no_grad():
        out = focus(emb, patches, prompt)
        change = (focus(far, patches, prompt) - out).abs()
    assert out.shape == (1, 1, 32, 32)
    assert float(change[..., -4:, -4:].max()) > 1e-3  # the corner itself always changes
    assert (float(change[..., :8, :8].max()) > 1e-6) == bool(context)  # the far corner only with the U-Net


def test_text_conditioned_focus_rejects_bad_context_features() -> None:
    from radvlsm.models.focus import TextConditionedFocus

    for bad in [(8, 8, 16), (8, 8, 16, 16, 32, 6)]:
        with pytest.raises(RadVLSMInputError, match="BasicUNet"):
            TextConditionedFocus(image_dim=8, prompt_dim=6, hidden=8, layers=1, context_features=bad)
