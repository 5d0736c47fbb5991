"""Tests for radvlsm.models.sam (tiny config; real LiteMedSAM weights marked slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.image_encoder import build_image_encoder, litemedsam_checkpoint_path, load_checkpoint_state
from radvlsm.models.sam import DecoderOutput, PromptableMaskDecoder, build_mask_decoder, decoder_config


@pytest.fixture(scope="module")
def decoder() -> PromptableMaskDecoder:
    return build_mask_decoder("tiny")


def _embeddings(b: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 32, 16, 16, generator=torch.Generator().manual_seed(seed))


def _boxes(b: int, k: int) -> torch.Tensor:
    xy = torch.rand(b, k, 2, generator=torch.Generator().manual_seed(1)) * 32
    return torch.cat([xy, xy + 8 + torch.rand(b, k, 2) * 20], dim=-1)


def test_tiny_sizes_match_tiny_image_encoder(decoder: PromptableMaskDecoder) -> None:
    encoder = build_image_encoder("tiny")
    assert (decoder.image_size, decoder.embed_dim, decoder.embedding_size, decoder.mask_size) == (64, 32, 16, 64)
    out = decoder(encoder(torch.rand(1, 1, 64, 64)), boxes=_boxes(1, 2))
    assert out.mask_logits.shape == (1, 2, 1, 64, 64)


def test_box_output_shapes(decoder: PromptableMaskDecoder) -> None:
    out = decoder(_embeddings(2), boxes=_boxes(2, 3))
    assert isinstance(out, DecoderOutput)
    assert out.mask_logits.shape == (2, 3, 1, 64, 64)
    assert out.iou_pred.shape == (2, 3)
    assert out.mask_tokens.shape == (2, 3, 32)
    assert out.mask_logits.dtype == torch.float32


def test_points_and_masks_only(decoder: PromptableMaskDecoder) -> None:
    points = torch.rand(1, 4, 3, 2) * 64
    labels = torch.tensor([[[1, 0, -1], [1, 1, 1], [1, -1, -1], [0, 1, -1]]])
    out = decoder(_embeddings(), points=points, point_labels=labels)
    assert out.mask_logits.shape == (1, 4, 1, 64, 64)
    out = decoder(_embeddings(), mask_inputs=torch.randn(1, 2, 1, 64, 64))
    assert out.mask_logits.shape == (1, 2, 1, 64, 64)
    out = decoder(
        _embeddings(), boxes=_boxes(1, 4), points=points, point_labels=labels, mask_inputs=torch.randn(1, 4, 1, 64, 64)
    )
    assert out.iou_pred.shape == (1, 4)


def test_k_batching_matches_one_by_one(decoder: PromptableMaskDecoder) -> None:
    emb, boxes = _embeddings(), _boxes(1, 5)
    points, labels = torch.rand(1, 5, 2, 2) * 64, torch.tensor([[[1, 0]] * 5])
    together = decoder(emb, boxes=boxes, points=points, point_labels=labels)
    for k in range(5):
        alone = decoder(emb, boxes=boxes[:, k : k + 1], points=points[:, k : k + 1], point_labels=labels[:, k : k + 1])
        torch.testing.assert_close(together.mask_logits[:, k : k + 1], alone.mask_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(together.iou_pred[:, k : k + 1], alone.iou_pred, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(together.mask_tokens[:, k : k + 1], alone.mask_tokens, atol=1e-5, rtol=1e-4)


def test_batch_of_two_matches_each_image(decoder: PromptableMaskDecoder) -> None:
    emb, boxes = _embeddings(2), _boxes(2, 3)
    both = decoder(emb, boxes=boxes)
    for i in range(2):
        one = decoder(emb[i : i + 1], boxes=boxes[i : i + 1])
        torch.testing.assert_close(both.mask_logits[i : i + 1], one.mask_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(both.mask_tokens[i : i + 1], one.mask_tokens, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(both.mask_logits[0], both.mask_logits[1])


def test_multimask_keeps_best_candidate(decoder: PromptableMaskDecoder) -> None:
    emb, boxes = _embeddings(), _boxes(1, 3)
    out = decoder(emb, boxes=boxes, multimask_output=True)
    assert out.mask_logits.shape == (1, 3, 1, 64, 64)
    sparse, dense = decoder.prompt_encoder(points=None, boxes=boxes[0], masks=None)
    masks, iou = decoder.mask_decoder(emb, decoder.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)
    torch.testing.assert_close(out.iou_pred[0], iou.max(dim=1).values)
    best = iou.argmax(dim=1)
    torch.testing.assert_close(out.mask_logits[0, :, 0], masks[torch.arange(3), best])


def test_gradients_reach_decoder_and_embeddings() -> None:
    decoder = build_mask_decoder("tiny").train()
    emb = _embeddings(2).requires_grad_(True)
    out = decoder(emb, boxes=_boxes(2, 2))
    (out.mask_logits.mean() + out.iou_pred.mean() + out.mask_tokens.mean()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert decoder.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.grad is not None
    assert decoder.prompt_encoder.point_embeddings[2].weight.grad is not None  # box corner embedding


def test_region_embedding() -> None:
    emb = torch.zeros(1, 4, 16, 16)
    emb[:, :, :8] = 1.0  # top half of every channel is 1
    logits = torch.full((1, 2, 1, 64, 64), -20.0)
    logits[0, 0, 0, :32] = 20.0  # mask 0: top half; mask 1: bottom half
    logits[0, 1, 0, 32:] = 20.0
    region = PromptableMaskDecoder.region_embedding(emb, logits)
    assert region.shape == (1, 2, 4)
    torch.testing.assert_close(region[0, 0], torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(region[0, 1], torch.zeros(4), atol=1e-4, rtol=0)
    logits.requires_grad_(True)
    PromptableMaskDecoder.region_embedding(emb, logits * 0.01).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "prompts"),
        ({"boxes": torch.zeros(1, 2, 4), "mask_inputs": torch.zeros(1, 3, 1, 64, 64)}, "prompts"),
        ({"boxes": torch.zeros(2, 2, 4)}, "boxes"),
        ({"points": torch.zeros(1, 2, 1, 2)}, "point_labels"),
        ({"points": torch.zeros(1, 2, 1, 2), "point_labels": torch.full((1, 2, 1), 2)}, "point_labels"),
        ({"points": torch.zeros(1, 2, 1, 2), "point_labels": torch.ones(1, 2)}, "point_labels"),
        ({"mask_inputs": torch.zeros(1, 2, 1, 32, 32)}, "mask_inputs"),
    ],
)
def test_bad_prompts_raise(decoder: PromptableMaskDecoder, kwargs: dict, match: str) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        decoder(_embeddings(), **kwargs)


def test_bad_embeddings_raise(decoder: PromptableMaskDecoder) -> None:
    with pytest.raises(RadVLSMInputError, match="image_embeddings"):
        decoder(torch.zeros(1, 16, 16, 16), boxes=torch.zeros(1, 1, 4))


def test_checkpoint_round_trip_and_mismatch(tmp_path: Path, decoder: PromptableMaskDecoder) -> None:
    torch.manual_seed(3)
    other = PromptableMaskDecoder(decoder_config("tiny")).eval()
    state = dict(other.state_dict())
    state["image_encoder.neck.0.weight"] = torch.zeros(1)  # full-model keys are ignored
    path = tmp_path / "dec.pth"
    torch.save(state, path)
    loaded = build_mask_decoder("tiny", checkpoint=path)
    emb, boxes = _embeddings(), _boxes(1, 2)
    torch.testing.assert_close(loaded(emb, boxes=boxes).mask_logits, other(emb, boxes=boxes).mask_logits)
    with pytest.raises(RadVLSMInputError, match=r"unexpected.*wrong shape"):
        build_mask_decoder("tiny", checkpoint=litemedsam_checkpoint_path())


@pytest.mark.slow
def test_litemedsam_decoder_weights_fit_exactly() -> None:
    decoder = build_mask_decoder("litemedsam")
    packaged = load_checkpoint_state(litemedsam_checkpoint_path())
    expected = {k: v for k, v in packaged.items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
    state = decoder.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert (decoder.image_size, decoder.embed_dim, decoder.embedding_size, decoder.mask_size) == (256, 256, 64, 256)


def _ellipse_phantom() -> tuple[torch.Tensor, torch.Tensor]:
    """Dark ellipse on a speckled brighter background, (256, 256) in [0, 1], and its mask."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    mask = (((xx - 128) / 60) ** 2 + ((yy - 120) / 40) ** 2 <= 1).float()
    speckle = torch.nn.functional.avg_pool2d((0.6 + 0.15 * torch.randn(1, 1, 256, 256, generator=g)), 3, 1, 1)[0, 0]
    image = torch.where(mask > 0, 0.15 + 0.05 * torch.randn(256, 256, generator=g), speckle).clamp(0, 1)
    return (image - image.min()) / (image.max() - image.min()), mask


@pytest.mark.slow
def test_litemedsam_segments_synthetic_lesion_from_box() -> None:
    image, mask = _ellipse_phantom()
    encoder, decoder = build_image_encoder("litemedsam"), build_mask_decoder("litemedsam")
    with torch.inference_mode():
        out = decoder(encoder(image[None, None]), boxes=torch.tensor([[[62.0, 74.0, 194.0, 166.0]]]))
    pred = (out.mask_logits[0, 0, 0] > 0).float()
    dice = 2 * (pred * mask).sum() / (pred.sum() + mask.sum())
    assert dice > 0.7, f"Dice {dice:.3f}"
    assert out.mask_tokens.shape == (1, 1, 256)
