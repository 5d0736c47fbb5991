"""Batched SAM decoding (radvlsm.models.decode) against the per-candidate decoder path it replaces."""

from __future__ import annotations

import pytest
import torch

import radvlsm.models.decode as decode
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.decode import decode_candidates, decode_learned, decode_prompts
from radvlsm.models.sam import build_mask_decoder

FIELDS = ("mask_logits", "iou_pred", "mask_tokens")


def _prompts(b: int, k: int, size: int, n_valid: int, seed: int = 0):
    """Random candidate prompts padded the way CandidateGenerator pads: invalid ones copy candidate 0."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, k, 2, generator=g) * size * 0.6
    boxes = torch.cat([xy, xy + 4 + torch.rand(b, k, 2, generator=g) * size * 0.35], -1)
    points = torch.rand(b, k, 2, 2, generator=g) * (size - 1)
    labels = torch.tensor([1, 0]).repeat(b, k, 1)
    labels[:, -1, 1] = -1  # a missing negative point is SAM padding, kept as a token
    valid = torch.zeros(b, k, dtype=torch.bool)
    valid[:, :n_valid] = True
    boxes[:, n_valid:], points[:, n_valid:], labels[:, n_valid:] = boxes[:, :1], points[:, :1], labels[:, :1]
    return boxes, points, labels, valid


@pytest.fixture(scope="module")
def tiny_decoder():
    return build_mask_decoder("tiny")


def _close(a, b) -> None:
    for f in FIELDS:
        torch.testing.assert_close(getattr(a, f), getattr(b, f), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("n_valid", [6, 3, 1])
def test_one_pass_matches_the_per_candidate_path(tiny_decoder, n_valid) -> None:
    emb = torch.randn(2, 32, 16, 16, generator=torch.Generator().manual_seed(1))
    boxes, points, labels, valid = _prompts(2, 6, 64, n_valid)
    with torch.no_grad():
        box_ref = tiny_decoder(emb, boxes=boxes)
        point_ref = tiny_decoder(emb, points=points, point_labels=labels)
        box_out, point_out, _ = decode_candidates(tiny_decoder, emb, boxes, points, labels, valid)
    _close(box_out, box_ref)
    _close(point_out, point_ref)


def test_litemedsam_weights_match_the_per_candidate_path() -> None:
    decoder = build_mask_decoder("litemedsam")
    emb = 0.3 * torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(2))
    boxes, points, labels, valid = _prompts(1, 4, 256, 3)
    with torch.no_grad():
        box_ref = decoder(emb, boxes=boxes)
        point_ref = decoder(emb, points=points, point_labels=labels)
        box_out, point_out, _ = decode_candidates(decoder, emb, boxes, points, labels, valid)
        click_ref = decoder(emb, boxes=boxes[:, :1], points=points[:, :1], point_labels=labels[:, :1])
        click = decode_prompts(decoder, emb, boxes[:, 0], points[:, 0], labels[:, 0])
    _close(box_out, box_ref)
    _close(point_out, point_ref)
    _close(click, click_ref)


def test_ruled_out_candidates_are_not_decoded(tiny_decoder, monkeypatch) -> None:
    decoded: list[int] = []
    original = decode.decode_sparse

    def counting(decoder, embedding, sparse, mask, dense=None):
        decoded.append(sparse.shape[0])
        return original(decoder, embedding, sparse, mask, dense)

    monkeypatch.setattr(decode, "decode_sparse", counting)
    emb = torch.randn(2, 32, 16, 16)
    boxes, points, labels, valid = _prompts(2, 6, 64, 2)
    valid[1, :] = True
    with torch.no_grad():
        decode_candidates(tiny_decoder, emb, boxes, points, labels, valid)
    assert decoded == [2 * 2, 2 * 6]  # one pass per image: its valid boxes and points together


def test_candidate_zero_must_be_valid(tiny_decoder) -> None:
    boxes, points, labels, valid = _prompts(1, 3, 64, 3)
    valid[0, 0] = False
    with pytest.raises(RadVLSMInputError, match="candidate 0"):
        decode_candidates(tiny_decoder, torch.randn(1, 32, 16, 16), boxes, points, labels, valid)


@pytest.mark.parametrize("prompt", ["box", "points", "both"])
def test_one_prompt_per_image_matches(tiny_decoder, prompt) -> None:
    emb = torch.randn(2, 32, 16, 16)
    boxes, points, labels, _ = _prompts(2, 1, 64, 1)
    box = None if prompt == "points" else boxes[:, 0]
    pts = None if prompt == "box" else points[:, 0]
    lbl = None if prompt == "box" else labels[:, 0]
    with torch.no_grad():
        ref = tiny_decoder(
            emb,
            boxes=None if box is None else box[:, None],
            points=None if pts is None else pts[:, None],
            point_labels=None if lbl is None else lbl[:, None],
        )
        out = decode_prompts(tiny_decoder, emb, box, pts, lbl)
    _close(out, ref)


def test_model_forward_uses_the_same_masks_as_the_per_candidate_path(tiny_model) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False).eval()
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out = model(images, content_size=(50, 64))
        emb = model.encode_image(images)
        c = out.candidates
        k = out.point_mask_logits.shape[1]  # the map's candidates; the learned prompts' follow
        ref_box = model.mask_decoder(emb, boxes=c.boxes[:, :k])
        ref_point = model.mask_decoder(emb, points=c.points[:, :k], point_labels=c.point_labels[:, :k])
        ref_learned = decode_learned(model.candidate_decoder, emb, model.learned_prompts())
    assert out.mask_logits.shape[1] == k + model.learned_prompts.tokens.shape[0]
    torch.testing.assert_close(out.mask_logits[:, :k], ref_box.mask_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.point_mask_logits, ref_point.mask_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.iou_pred[:, :k], ref_box.iou_pred, atol=1e-4, rtol=1e-4)
    # learned prompts: the same masks as decoding them alone, nothing on the padding below row 50
    learned = out.mask_logits[:, k:]
    torch.testing.assert_close(learned[..., :50, :], ref_learned.mask_logits[..., :50, :], atol=1e-4, rtol=1e-4)
    assert bool((learned[..., 50:, :] == -20.0).all())
    torch.testing.assert_close(out.iou_pred[:, k:], ref_learned.iou_pred, atol=1e-4, rtol=1e-4)


def test_gradients_flow_through_the_batched_decoder(tiny_decoder) -> None:
    emb = torch.randn(1, 32, 16, 16, requires_grad=True)
    boxes, points, labels, valid = _prompts(1, 3, 64, 2)
    box_out, point_out, _ = decode_candidates(tiny_decoder, emb, boxes, points, labels, valid)
    (box_out.mask_logits.mean() + point_out.iou_pred.sum()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
