"""MCRA: a dominant candidate wins, several reliable lesions survive, unreliable ones are dropped, gradients flow."""

from __future__ import annotations

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.mcra import MCRA, greedy_clusters

S, C = 16, 8


def logit_mask(*rects: tuple[int, int, int, int]) -> torch.Tensor:
    """Mask logits (+8 inside the rectangles x0, y0, x1, y1, -8 outside) of shape (1, S, S)."""
    m = torch.full((1, S, S), -8.0)
    for x0, y0, x1, y1 in rects:
        m[:, y0:y1, x0:x1] = 8.0
    return m


def run(masks: list[torch.Tensor], rel: list[float], valid: list[bool] | None = None, **kw):
    torch.manual_seed(0)
    k = len(masks)
    mask_logits = torch.stack(masks)[None]
    diag = torch.randn(1, k, 2)
    region = torch.randn(1, k, C)
    valid_t = torch.tensor([valid or [True] * k])
    out = MCRA(**kw)(mask_logits, diag, region, torch.tensor([rel]), valid_t)
    return out, mask_logits, diag, region


def test_shapes_and_weights() -> None:
    out, *_ = run([logit_mask((0, 0, 8, 8)), logit_mask((1, 1, 8, 8)), logit_mask((9, 9, 15, 15))], [0.0, 1.0, 2.0])
    assert out.mask_prob.shape == (1, 1, S, S)
    assert out.diag_logits.shape == (1, 2) and out.region_emb.shape == (1, C)
    assert out.weights.shape == (1, 3) and out.kept.dtype == torch.bool
    torch.testing.assert_close(out.weights.sum(1), torch.ones(1))
    assert out.clusters.tolist() == [[1, 1, 0]]


def test_one_dominant_candidate_is_returned() -> None:
    masks = [logit_mask((2, 2, 10, 10)), logit_mask((3, 2, 10, 11)), logit_mask((11, 11, 15, 15))]
    out, mask_logits, diag, region = run(masks, [-20.0, 20.0, -20.0])
    torch.testing.assert_close(out.mask_prob[0], torch.sigmoid(mask_logits[0, 1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.diag_logits[0], diag[0, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.region_emb[0], region[0, 1], atol=1e-5, rtol=0)
    assert out.kept.tolist() == [[True, True, False]]  # same lesion as the winner / unreliable elsewhere


def test_two_disjoint_reliable_lesions_are_both_kept_at_full_strength() -> None:
    masks = [logit_mask((1, 1, 6, 6)), logit_mask((10, 10, 15, 15))]
    out, *_ = run(masks, [3.0, 2.0])
    assert out.kept.tolist() == [[True, True]]
    assert float(out.mask_prob[0, 0, 3, 3]) > 0.99 and float(out.mask_prob[0, 0, 12, 12]) > 0.99
    assert float(out.mask_prob[0, 0, 8, 8]) < 0.01
    torch.testing.assert_close(out.weights.sum(1), torch.ones(1))


def test_unreliable_disjoint_candidate_is_dropped() -> None:
    masks = [logit_mask((1, 1, 6, 6)), logit_mask((10, 10, 15, 15))]
    out, *_ = run(masks, [3.0, -2.0])
    assert out.kept.tolist() == [[True, False]]
    assert float(out.mask_prob[0, 0, 12, 12]) < 0.01
    best_only, *_ = run(masks, [-3.0, -4.0])  # nothing passes the gate: the best lesion is still kept
    assert best_only.kept.tolist() == [[True, False]] and float(best_only.mask_prob[0, 0, 3, 3]) > 0.99
    lenient, *_ = run(masks, [3.0, -2.0], keep_threshold=0.1)
    assert lenient.kept.tolist() == [[True, True]]


def test_invalid_candidates_are_ignored() -> None:
    masks = [logit_mask((1, 1, 6, 6)), logit_mask((10, 10, 15, 15))]
    out, *_ = run(masks, [0.0, 30.0], valid=[True, False])
    assert out.weights.tolist() == [[1.0, 0.0]] and out.kept.tolist() == [[True, False]]
    assert out.clusters.tolist() == [[0, -1]]
    assert float(out.mask_prob[0, 0, 12, 12]) < 0.01


def test_overlapping_candidates_are_averaged_within_the_lesion() -> None:
    masks = [logit_mask((2, 2, 10, 10)), logit_mask((2, 2, 10, 12))]  # IoU 0.8: one lesion
    out, mask_logits, *_ = run(masks, [0.0, 0.0])
    expected = torch.sigmoid(mask_logits[0]).mean(0)
    torch.testing.assert_close(out.mask_prob[0], expected)


def test_gradients_reach_masks_and_reliability() -> None:
    mask_logits = torch.stack([logit_mask((2, 2, 10, 10)), logit_mask((2, 2, 10, 12)), logit_mask((12, 12, 16, 16))])
    mask_logits = (mask_logits * 0.2)[None].requires_grad_(True)
    rel = torch.tensor([[0.5, -0.5, 1.0]], requires_grad=True)
    diag, region = torch.randn(1, 3, 2, requires_grad=True), torch.randn(1, 3, C)
    out = MCRA()(mask_logits, diag, region, rel, torch.ones(1, 3, dtype=torch.bool))
    (out.mask_prob.sum() + out.diag_logits[:, 1].sum()).backward()
    assert mask_logits.grad is not None and rel.grad is not None
    assert torch.isfinite(mask_logits.grad).all() and torch.isfinite(rel.grad).all()
    assert float(mask_logits.grad.abs().sum()) > 0 and float(rel.grad.abs().sum()) > 0


def test_greedy_clusters() -> None:
    iou = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]).numpy()
    clusters = greedy_clusters(iou, torch.tensor([0.0, 2.0, 1.0]).numpy(), torch.ones(3).bool().numpy(), 0.3)
    assert clusters.tolist() == [0, 0, 1]


def test_bad_input_raises() -> None:
    mcra = MCRA()
    with pytest.raises(RadVLSMInputError, match="mask_logits"):
        mcra(torch.zeros(1, 2, S, S), torch.zeros(1, 2, 2), torch.zeros(1, 2, C), torch.zeros(1, 2), torch.ones(1, 2))
    with pytest.raises(RadVLSMInputError, match="region_emb"):
        mcra(
            torch.zeros(1, 2, 1, S, S), torch.zeros(1, 2, 2), torch.zeros(1, 3, C), torch.zeros(1, 2), torch.ones(1, 2)
        )
    with pytest.raises(RadVLSMInputError, match="cluster_iou"):
        MCRA(cluster_iou=1.5)


def test_a_low_temperature_makes_the_fused_mask_the_most_reliable_candidate() -> None:
    from radvlsm.models.mcra import MCRA

    torch.manual_seed(0)
    logits = torch.randn(1, 3, 1, 16, 16) * 4
    logits[:, :, :, 4:12, 4:12] += 6  # overlapping candidates: one lesion
    diag, emb = torch.randn(1, 3, 2), torch.randn(1, 3, 5)
    rel = torch.tensor([[2.0, 1.0, 0.0]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    warm = MCRA(cluster_iou=0.1, keep_threshold=0.5, temperature=1.0)(logits, diag, emb, rel, valid)
    cold = MCRA(cluster_iou=0.1, keep_threshold=0.5, temperature=0.01)(logits, diag, emb, rel, valid)
    best = torch.sigmoid(logits[:, 0])
    torch.testing.assert_close(cold.mask_prob, best, atol=1e-4, rtol=0)
    assert (warm.mask_prob - best).abs().max() > 1e-2
    assert cold.weights[0, 0] > 0.999
