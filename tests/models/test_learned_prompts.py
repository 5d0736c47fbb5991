from __future__ import annotations

import pytest
import torch

from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.decode import decode_learned
from radvlsm.models.learned_prompts import LearnedPrompts


def test_learned_prompts_start_as_centred_box_tokens(tiny_model) -> None:
    model = tiny_model(radiomics=False)
    tokens = model.learned_prompts()
    n = tokens.shape[0]
    assert tokens.shape == (n, 2, model.mask_decoder.embed_dim)
    s = model.image_size
    half = torch.linspace(0.33, 0.75, n)[:, None] * s / 2
    boxes = torch.cat([s / 2 - half, s / 2 - half, s / 2 + half, s / 2 + half], 1)
    sparse, _ = model.mask_decoder.prompt_encoder(points=None, boxes=boxes, masks=None)
    torch.testing.assert_close(tokens, sparse)


def test_prompts_stage_trains_the_learned_tokens_through_the_frozen_decoder(tiny_model) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False)
    for p in model.parameters():
        p.requires_grad_(False)
    model.learned_prompts.tokens.requires_grad_(True)
    emb = torch.randn(2, 32, 16, 16)
    label = torch.zeros(2, 1, 64, 64)
    label[:, :, 10:30, 20:40] = 1
    total, terms = RadVLSMLoss().prompts(model, emb, label)
    total.backward()
    assert model.learned_prompts.tokens.grad.abs().sum() > 0
    assert float(terms["learned_best"].detach()) <= float(terms["learned_mean"].detach()) + 1e-6
    out = decode_learned(model.mask_decoder, emb, model.learned_prompts())
    assert out.mask_logits.shape == (2, model.learned_prompts.tokens.shape[0], 1, 64, 64)


def test_learned_prompts_refuse_bad_sizes() -> None:
    with pytest.raises(RadVLSMInputError):
        LearnedPrompts(0, 8)
