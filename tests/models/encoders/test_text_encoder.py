"""Tests for radvlsm.models.encoders.text_encoder (tiny BERT, tiny open_clip; real MiniLM marked slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.text_encoder import TextEncoder, build_text_encoder
from radvlsm.models.encoders.text_hub import minilm_model_path

TEXTS = ["irregular hypoechoic mass", "oval circumscribed mass", "irregular hypoechoic mass"]


@pytest.fixture(scope="module")
def tiny() -> TextEncoder:
    return build_text_encoder("tiny")


def test_tiny_encode_shape_and_norm(tiny: TextEncoder) -> None:
    assert (tiny.embed_dim, tiny.hidden_size) == (32, 32)
    out = tiny.encode(TEXTS)
    assert out.shape == (3, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out[0], out[2])
    assert not torch.allclose(out[0], out[1])
    assert tiny.encode([]).shape == (0, 32)


def test_encode_caches_each_string(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = build_text_encoder("tiny")
    calls: list[list[str]] = []
    original = encoder._encode_batch
    monkeypatch.setattr(encoder, "_encode_batch", lambda texts: calls.append(texts) or original(texts))
    first = encoder.encode(TEXTS)
    second = encoder.encode(["oval circumscribed mass", "new text"])
    assert calls == [["irregular hypoechoic mass", "oval circumscribed mass"], ["new text"]]
    torch.testing.assert_close(second[0], first[1])
    assert not first.requires_grad


def test_frozen_by_default_and_stays_eval(tiny: TextEncoder) -> None:
    assert not any(p.requires_grad for p in tiny.parameters())
    parent = torch.nn.ModuleDict({"text": tiny}).train()
    assert parent.training and not tiny.training and not tiny.model.training
    trainable = build_text_encoder("tiny", frozen=False).train()
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())


def test_token_embeddings_round_trip(tiny: TextEncoder) -> None:
    embeds, mask = tiny.token_embeddings(TEXTS[:2])
    assert embeds.shape[:2] == mask.shape and embeds.shape[0] == 2 and embeds.shape[-1] == tiny.hidden_size
    torch.testing.assert_close(tiny.encode_embeddings(embeds, mask), tiny.encode(TEXTS[:2]), atol=1e-5, rtol=1e-4)


def test_coop_context_gets_gradient(tiny: TextEncoder) -> None:
    embeds, mask = tiny.token_embeddings(["benign lesion", "malignant lesion"])
    context = torch.nn.Parameter(torch.randn(4, tiny.hidden_size) * 0.02)
    ctx = context[None].expand(2, -1, -1)
    inputs = torch.cat([embeds[:, :1], ctx, embeds[:, 1:]], dim=1)  # after [CLS]
    full_mask = torch.cat([mask[:, :1], torch.ones(2, 4, dtype=mask.dtype), mask[:, 1:]], dim=1)
    out = tiny.encode_embeddings(inputs, full_mask)
    assert out.shape == (2, 32)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    out[:, 0].sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0


def test_bad_inputs_raise(tiny: TextEncoder) -> None:
    with pytest.raises(RadVLSMInputError, match="texts"):
        tiny.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(RadVLSMInputError, match="texts"):
        tiny.token_embeddings([])
    embeds, mask = tiny.token_embeddings(["a"])
    with pytest.raises(RadVLSMInputError, match="attention_mask"):
        tiny.encode_embeddings(embeds, mask[:, :-1])
    with pytest.raises(RadVLSMInputError, match="inputs_embeds"):
        tiny.encode_embeddings(embeds[..., :8], mask)
    with pytest.raises(RadVLSMInputError, match="name"):
        build_text_encoder("no-such-encoder")


def test_open_clip_random_small_model() -> None:
    encoder = build_text_encoder("open_clip:ViT-S-32")
    out = encoder.encode(["a mass", "no mass"])
    assert out.shape == (2, encoder.embed_dim) and encoder.embed_dim == 384
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(NotImplementedError, match="CoOp"):
        encoder.token_embeddings(["a"])
    with pytest.raises(NotImplementedError, match="CoOp"):
        encoder.encode_embeddings(torch.zeros(1, 2, 384), torch.ones(1, 2))


@pytest.mark.parametrize(
    "name, pretrained, match",
    [
        ("open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", None, "offline"),
        ("open_clip:RN50", "openai", "offline"),
        ("open_clip:RN50", "/no/such/weights.pt", "weights.pt: checkpoint file not found"),
        ("open_clip:RN50", "not-a-tag", "not an open_clip tag"),
        ("open_clip:NoSuchModel", None, "unknown open_clip model"),
        ("open_clip:", None, "open_clip:<model_name>"),
    ],
)
def test_open_clip_unavailable_weights_fail_fast(name: str, pretrained: str | None, match: str) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        build_text_encoder(name, pretrained)


def test_open_clip_local_checkpoint_file(tmp_path: Path) -> None:
    import open_clip

    model = open_clip.create_model("ViT-S-32", pretrained=None)
    torch.nn.init.constant_(model.text_projection, 0.01)
    path = tmp_path / "vit_s_32.pt"
    torch.save(model.state_dict(), path)
    encoder = build_text_encoder("open_clip:ViT-S-32", pretrained=str(path))
    torch.testing.assert_close(encoder.model.text_projection, model.text_projection)


@pytest.mark.slow
def test_minilm_embeddings() -> None:
    encoder = build_text_encoder("minilm")
    assert (encoder.embed_dim, encoder.hidden_size) == (384, 384)
    out = encoder.encode(["malignant breast lesion", "malignant tumor", "normal liver parenchyma"])
    assert out.shape == (3, 384)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    assert out[0] @ out[1] > out[0] @ out[2]
    embeds, mask = encoder.token_embeddings(["malignant tumor"])
    embeds = embeds.clone().requires_grad_(True)
    again = encoder.encode_embeddings(embeds, mask)
    torch.testing.assert_close(again, out[1:2], atol=1e-5, rtol=1e-4)
    again.sum().backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0
    by_path = build_text_encoder(str(minilm_model_path()))
    torch.testing.assert_close(by_path.encode(["malignant tumor"]), out[1:2])
