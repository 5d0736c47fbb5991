"""Alignment heads: shapes and normalisation, shared image projection, InfoNCE with repeated phrases, CoOp."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.align import PromptLearner, SemanticAligner, contrastive_loss, phrase_groups

C, DT, E = 32, 24, 16


@pytest.fixture
def aligner() -> SemanticAligner:
    torch.manual_seed(0)
    return SemanticAligner(C, DT, E)


def test_projection_shapes_and_unit_norm(aligner: SemanticAligner) -> None:
    feats = torch.randn(2, C, 4, 5)
    patches = aligner.project_patches(feats)
    assert patches.shape == (2, E, 4, 5)
    torch.testing.assert_close(patches.norm(dim=1), torch.ones(2, 4, 5))
    assert aligner.project_global(feats).shape == (2, E)
    assert aligner.project_region(torch.randn(2, 3, C)).shape == (2, 3, E)
    assert aligner.project_region(torch.randn(2, C)).shape == (2, E)
    text = aligner.project_text(torch.randn(5, DT))
    assert text.shape == (5, E)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(5))


def test_global_and_region_share_the_patch_projection(aligner: SemanticAligner) -> None:
    feats = torch.randn(2, C, 4, 4)
    torch.testing.assert_close(aligner.project_global(feats), aligner.project_region(feats.mean(dim=(2, 3))))
    one_patch = aligner.project_region(feats[:, :, 1, 2])
    torch.testing.assert_close(one_patch, aligner.project_patches(feats)[:, :, 1, 2])


@pytest.mark.parametrize(
    ("method", "shape"),
    [("project_patches", (2, C + 1, 4, 4)), ("project_global", (2, C)), ("project_region", (2, 3, C - 1)),
     ("project_text", (5, DT + 2)), ("project_text", (1, 5, DT))],
)  # fmt: skip
def test_bad_shapes_raise(aligner: SemanticAligner, method: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(RadVLSMInputError):
        getattr(aligner, method)(torch.randn(*shape))


def test_scale_is_clamped_like_clip(aligner: SemanticAligner) -> None:
    assert math.isclose(float(aligner.scale().detach()), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        aligner.logit_scale.fill_(10.0)
    assert float(aligner.scale().detach()) == 100.0


def test_contrastive_loss_is_clip_loss_without_duplicates() -> None:
    torch.manual_seed(1)
    img, txt = F.normalize(torch.randn(6, E), dim=-1), F.normalize(torch.randn(6, E), dim=-1)
    log_scale = torch.tensor(math.log(10.0))
    expected = ClipLoss()(img, txt, torch.tensor(10.0))
    torch.testing.assert_close(contrastive_loss(img, txt, log_scale), expected)
    logits = 10.0 * img @ txt.t()
    manual = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.t(), torch.arange(6))) / 2
    torch.testing.assert_close(contrastive_loss(img, txt, log_scale), manual)


def test_repeated_phrases_are_not_negatives() -> None:
    phrases = F.normalize(torch.randn(3, E), dim=-1)
    ids = torch.tensor([0, 0, 1, 2, 2, 2])
    txt = phrases[ids]
    img = txt.clone()  # perfect alignment: every image equals its phrase
    log_scale = torch.tensor(math.log(100.0))
    loss = contrastive_loss(img, txt, log_scale)
    assert float(loss) < 0.05
    assert float(ClipLoss()(img, txt, torch.tensor(100.0))) > 0.5  # plain ClipLoss penalises the copies
    torch.testing.assert_close(phrase_groups(txt), torch.tensor([0, 0, 2, 3, 3, 3]))
    torch.testing.assert_close(contrastive_loss(img, txt, log_scale, text_ids=ids), loss)


def test_contrastive_loss_rejects_bad_input() -> None:
    with pytest.raises(RadVLSMInputError, match="contrastive_loss"):
        contrastive_loss(torch.randn(4, E), torch.randn(3, E), torch.tensor(0.0))
    with pytest.raises(RadVLSMInputError, match="image_emb"):
        contrastive_loss(torch.randn(1, E), torch.randn(1, E), torch.tensor(0.0))
    with pytest.raises(RadVLSMInputError, match="text_ids"):
        contrastive_loss(torch.randn(4, E), torch.randn(4, E), torch.tensor(0.0), text_ids=torch.zeros(3))


def test_alignment_loss_decreases_on_a_toy_problem() -> None:
    torch.manual_seed(0)
    n_phrases, per_phrase = 4, 3
    text_raw = torch.randn(n_phrases, DT)
    prototypes = torch.randn(n_phrases, C)
    ids = torch.arange(n_phrases).repeat_interleave(per_phrase)
    feats = prototypes[ids] + 0.3 * torch.randn(len(ids), C)
    aligner = SemanticAligner(C, DT, E)
    opt = torch.optim.Adam(aligner.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = contrastive_loss(aligner.project_region(feats), aligner.project_text(text_raw[ids]), aligner.logit_scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_prompt_learner_inserts_context_after_cls() -> None:
    torch.manual_seed(0)
    learner = PromptLearner(n_ctx=3, ctx_dim=8)
    tokens = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    embeds, new_mask = learner(tokens, mask)
    assert embeds.shape == (2, 8, 8) and new_mask.shape == (2, 8)
    assert new_mask.dtype == mask.dtype
    torch.testing.assert_close(embeds[:, 0], tokens[:, 0])
    torch.testing.assert_close(embeds[:, 1:4], learner.ctx[None].expand(2, -1, -1))
    torch.testing.assert_close(embeds[:, 4:], tokens[:, 1:])
    assert new_mask.tolist() == [[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8]


def test_prompt_learner_gradient_reaches_context() -> None:
    torch.manual_seed(0)
    learner = PromptLearner(n_ctx=2, ctx_dim=8)
    tower = torch.nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    for p in tower.parameters():
        p.requires_grad_(False)  # frozen text tower
    embeds, mask = learner(torch.randn(3, 4, 8), torch.ones(3, 4, dtype=torch.long))
    out = tower(embeds, src_key_padding_mask=mask == 0)
    out[:, 0].pow(2).sum().backward()
    assert learner.ctx.grad is not None
    assert float(learner.ctx.grad.abs().sum()) > 0


def test_prompt_learner_rejects_bad_input() -> None:
    with pytest.raises(RadVLSMInputError):
        PromptLearner(0, 8)
    learner = PromptLearner(2, 8)
    with pytest.raises(RadVLSMInputError, match="token_embeds"):
        learner(torch.randn(2, 4, 7), torch.ones(2, 4))
    with pytest.raises(RadVLSMInputError, match="attention_mask"):
        learner(torch.randn(2, 4, 8), torch.ones(2, 5))
