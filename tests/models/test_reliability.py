"""Reliability cues, head, weights, IoU targets and loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.reliability import (
    ReliabilityHead,
    cam_response_cue,
    mask_consistency_cue,
    mask_iou,
    reliability_loss,
    reliability_weights,
    semantic_consistency_cue,
    stack_cues,
)

S = 16


def square(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    m = torch.zeros(S, S)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_cam_response_cue_prefers_masks_on_the_response() -> None:
    cam = square(2, 2, 8, 8)[None, None]
    masks = torch.stack([square(2, 2, 8, 8), square(9, 9, 15, 15), torch.full((S, S), 0.5)])[None, :, None]
    cue = cam_response_cue(cam, masks)
    assert cue.shape == (1, 3)
    assert float(cue[0, 0]) == pytest.approx(1.0, abs=1e-4)
    assert float(cue[0, 1]) < 0
    assert float(cue[0, 2]) == pytest.approx(0.0, abs=1e-4)
    low_res = F.interpolate(cam, size=(8, 8), mode="area")  # a map at another size is resized
    assert cam_response_cue(low_res, masks).shape == (1, 3)
    with pytest.raises(RadVLSMInputError, match="masks_prob"):
        cam_response_cue(cam, masks[:, :, 0])


def test_semantic_consistency_cue_is_cosine() -> None:
    torch.manual_seed(0)
    region, text = torch.randn(2, 3, 8), torch.randn(8)
    cue = semantic_consistency_cue(region, text)
    torch.testing.assert_close(cue, F.cosine_similarity(region, text[None, None], dim=-1))
    torch.testing.assert_close(semantic_consistency_cue(region, text[None].expand(2, -1)), cue)
    with pytest.raises(RadVLSMInputError, match="lesion_text_emb"):
        semantic_consistency_cue(region, torch.randn(7))


def test_mask_consistency_cue_is_soft_dice() -> None:
    a = torch.stack([square(0, 0, 8, 8), square(0, 0, 8, 8), torch.zeros(S, S)])[None, :, None]
    b = torch.stack([square(0, 0, 8, 8), square(8, 8, 16, 16), torch.zeros(S, S)])[None, :, None]
    torch.testing.assert_close(mask_consistency_cue(a, b), torch.tensor([[1.0, 0.0, 1.0]]))
    half = torch.stack([square(0, 0, 4, 8)] * 3)[None, :, None]
    assert float(mask_consistency_cue(a, half)[0, 0]) == pytest.approx(2 * 32 / (64 + 32))
    with pytest.raises(RadVLSMInputError, match="mask_b"):
        mask_consistency_cue(a, b[:, :2])


def test_stack_cues_and_head() -> None:
    cues = stack_cues(*(torch.rand(2, 5) for _ in range(4)))
    assert cues.shape == (2, 5, 4)
    head = ReliabilityHead(n_cues=4, hidden=8)
    logits = head(cues)
    assert logits.shape == (2, 5)
    with pytest.raises(RadVLSMInputError, match="cues"):
        stack_cues(torch.rand(2, 5), torch.rand(2, 4))
    with pytest.raises(RadVLSMInputError, match="cues"):
        head(torch.rand(2, 5, 3))


def test_reliability_weights_sum_to_one_and_ignore_invalid() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 6) * 5
    valid = torch.rand(4, 6) > 0.4
    valid[:, 2] = True
    logits[~valid] = 50.0  # an invalid candidate's logit must not matter
    w = reliability_weights(logits, valid)
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    assert bool((w[~valid] == 0).all())
    assert bool((w[valid] > 0).all())
    sharp = reliability_weights(logits, valid, temperature=0.1)
    assert bool((sharp.max(1).values >= w.max(1).values - 1e-6).all())
    with pytest.raises(RadVLSMInputError, match="valid"):
        reliability_weights(logits, torch.zeros(4, 6, dtype=torch.bool))
    with pytest.raises(RadVLSMInputError, match="temperature"):
        reliability_weights(logits, valid, temperature=0.0)


def test_mask_iou_targets() -> None:
    truth = square(0, 0, 8, 8)[None, None]
    masks = torch.stack([square(0, 0, 8, 8), square(0, 0, 8, 4), square(8, 8, 16, 16)])[None, :, None] * 0.9
    torch.testing.assert_close(mask_iou(masks, truth), torch.tensor([[1.0, 0.5, 0.0]]))
    assert float(mask_iou(torch.zeros(1, 1, 1, S, S), torch.zeros(1, 1, S, S))) == 1.0
    with pytest.raises(RadVLSMInputError, match="truth"):
        mask_iou(masks, torch.zeros(1, 1, 8, 8))


def test_reliability_loss_regresses_iou_and_ranks() -> None:
    target = torch.tensor([[0.9, 0.5, 0.1, 0.3]])
    valid = torch.tensor([[True, True, True, False]])
    exact = torch.logit(target)
    no_rank = reliability_loss(exact, target, valid, rank_weight=0.0)
    assert float(no_rank) == pytest.approx(0.0, abs=1e-7)
    other = exact.clone()
    other[0, 3] = 9.0  # invalid entries do not count
    assert float(reliability_loss(other, target, valid, rank_weight=0.0)) == pytest.approx(0.0, abs=1e-7)
    reversed_order = torch.logit(target.flip(-1))
    assert float(reliability_loss(reversed_order, target, valid)) > float(reliability_loss(exact, target, valid))


def test_reliability_loss_trains_the_head() -> None:
    torch.manual_seed(0)
    cues = torch.rand(8, 6, 4)
    target = cues.mean(-1)  # a learnable relation between cues and IoU
    valid = torch.ones(8, 6, dtype=torch.bool)
    head = ReliabilityHead(n_cues=4, hidden=16)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = reliability_loss(head(cues), target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses[::10]


def test_cam_coverage_prefers_the_candidate_holding_most_of_the_response() -> None:
    from radvlsm.models.reliability import cam_coverage_cue

    cam = torch.zeros(1, 1, 32, 32)
    cam[..., 4:20, 4:20] = 1.0  # the lesion: large and bright
    cam[..., 26:29, 26:29] = 1.0  # a bright speck
    lesion, speck = torch.zeros(32, 32), torch.zeros(32, 32)
    lesion[4:20, 4:20] = 1
    speck[26:29, 26:29] = 1
    cov = cam_coverage_cue(cam, torch.stack([lesion, speck])[None, :, None])
    assert cov[0, 0] > 0.9 and cov[0, 1] < 0.05
    assert torch.allclose(cov.sum(), torch.tensor(1.0))
