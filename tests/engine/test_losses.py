"""radvlsm.engine.losses: each stage's terms on hand-made inputs, the weighting, gradients, batches of one."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from radvlsm.engine.losses import LossWeights, RadVLSMLoss, masked_region_embedding
from radvlsm.engine.prompt_sampling import foreground_points
from radvlsm.models.candidates import boxes_from_masks

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
TEXTS = ["oval circumscribed hypoechoic mass", "irregular spiculated mass with posterior shadowing"]


class HandMadeModel(nn.Module):
    """The parts of RadVLSM that ``RadVLSMLoss.align`` uses, with values chosen by hand.

    Patches are the embeddings themselves, the contrastive scale is 1, texts embed to fixed unit vectors and the
    focusing map is a learnable ``(B, 1, 2, 2)`` logit tensor (zeros).
    """

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.aligner = nn.Module()
        self.aligner.logit_scale = nn.Parameter(torch.zeros(()))
        self.aligner.project_patches = lambda embeddings: embeddings
        self.cam = nn.Parameter(torch.zeros(batch, 1, 2, 2))
        self.class_prompts = ["benign lesion", "malignant lesion"]
        self._texts = {TEXTS[0]: E1, TEXTS[1]: E2, "benign lesion": E2, "malignant lesion": E1}

    def text_embedding(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([self._texts[t] for t in texts])

    def lesion_embedding(self) -> torch.Tensor:
        return E1

    def focus(self, embeddings: torch.Tensor, patches: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
        return self.cam


def _constant_patches(*vectors: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 2, 2)``: every patch of image ``b`` is ``vectors[b]``."""
    return torch.stack([v[:, None, None].expand(2, 2, 2) for v in vectors])


@pytest.fixture(scope="module")
def tiny(tiny_model) -> nn.Module:
    torch.manual_seed(0)
    return tiny_model(radiomics=False).eval()


def _boxes_batch(model: nn.Module, n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    size = model.image_size
    labels = torch.zeros(n, 1, size, size)
    for i in range(n):
        y, x = (int(v) for v in torch.randint(4, size // 2, (2,), generator=g))
        labels[i, 0, y : y + size // 3, x : x + size // 3] = 1
    with torch.no_grad():
        embeddings = model.encode_image(torch.rand(n, 1, size, size, generator=g))
    return {
        "embeddings": embeddings,
        "labels": labels,
        "diagnosis": torch.arange(n) % 2,
        "texts": [TEXTS[i % 2] for i in range(n)],
        "boxes": boxes_from_masks(labels),
        "points": foreground_points(labels, g, n=2),
    }


def test_masked_region_embedding_is_the_normalised_mean_under_the_mask() -> None:
    patches = torch.zeros(1, 2, 2, 2)
    patches[0, :, 0, 0] = torch.tensor([3.0, 0.0])
    patches[0, :, 0, 1] = torch.tensor([0.0, 3.0])
    patches[0, :, 1, 1] = torch.tensor([0.0, -5.0])
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1  # the whole top-left patch
    mask[..., :2, 2] = 1  # half of the top-right patch
    expected = F.normalize(torch.tensor([[3.0, 0.5 * 3.0]]) / 1.5, dim=-1)
    torch.testing.assert_close(masked_region_embedding(patches, mask), expected)
    # an empty mask pools the whole image: mean of the four patches
    empty = masked_region_embedding(patches, torch.zeros(1, 1, 4, 4))
    torch.testing.assert_close(empty, F.normalize(torch.tensor([[3.0, -2.0]]), dim=-1))


def test_align_terms_on_hand_made_embeddings() -> None:
    model = HandMadeModel(batch=2)
    label = torch.ones(2, 1, 4, 4)
    total, terms = RadVLSMLoss().align(model, _constant_patches(E1, E2), label, TEXTS, torch.tensor([0, 1]))
    # regions e1, e2 against texts e1, e2 at scale 1: logits [[1, 0], [0, 1]], both directions
    assert float(terms["contrastive"].detach()) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # class prompts are swapped (benign -> e2, malignant -> e1): each region's own class has logit 0, the other 1
    assert float(terms["class_alignment"].detach()) == pytest.approx(math.log(1 + math.e), abs=1e-6)
    # zero focusing logits against an all-lesion mask: BCE log 2, soft Dice 1 - 2*2/(2+4)
    assert float(terms["focus"].detach()) == pytest.approx(math.log(2) + 1 / 3, abs=1e-4)
    w = LossWeights()
    expected = w.contrastive * terms["contrastive"] + w.class_alignment * terms["class_alignment"] + terms["focus"]
    torch.testing.assert_close(total, expected)
    total.backward()
    assert model.cam.grad is not None and model.cam.grad.abs().sum() > 0
    assert model.aligner.logit_scale.grad is not None and model.aligner.logit_scale.grad != 0


def test_align_on_a_batch_of_one_has_no_contrastive_term_but_trains() -> None:
    model = HandMadeModel(batch=1)
    total, terms = RadVLSMLoss().align(
        model, _constant_patches(E1), torch.ones(1, 1, 4, 4), TEXTS[:1], torch.tensor([0])
    )
    assert float(terms["contrastive"].detach()) == 0.0
    assert float(terms["class_alignment"].detach()) == pytest.approx(math.log(1 + math.e), abs=1e-6)
    total.backward()
    assert model.cam.grad.abs().sum() > 0


def _with_weights(values: dict[str, float]) -> LossWeights:
    return LossWeights(**{f.name: values.get(f.name, 0.0) for f in fields(LossWeights)})


def test_segment_total_is_the_weighted_sum_of_its_terms_and_reaches_every_trained_part(tiny: nn.Module) -> None:
    b = _boxes_batch(tiny, 2)
    names = ("candidate_mask", "prompt_mask", "fused_mask", "diagnosis", "reliability", "iou_head")
    weights = {n: float(i + 2) for i, n in enumerate(names)}  # distinct weights: a swapped one shows
    loss = RadVLSMLoss(_with_weights(weights))
    args = (tiny, b["embeddings"], b["labels"], b["diagnosis"], b["boxes"], b["points"][:, :1])
    total, terms, out = loss.segment(*args)
    assert set(terms) == set(names)
    assert all(torch.isfinite(v) and float(v.detach()) >= 0 for v in terms.values()), terms
    torch.testing.assert_close(total, sum(weights[n] * terms[n] for n in names))
    assert out.mask_logits.shape[0] == 2
    tiny.zero_grad()
    total.backward()
    for part in ("auto_decoder", "reliability_head", "diagnosis_head"):
        grads = [p.grad for p in getattr(tiny, part).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part
    # a term with weight 0 drops out of the total
    only_fused, terms_fused, _ = RadVLSMLoss(_with_weights({"fused_mask": 1.0})).segment(*args)
    torch.testing.assert_close(only_fused, terms_fused["fused_mask"])


@pytest.mark.parametrize("n", [1, 3])
def test_region_terms_weighting_and_gradients(tiny: nn.Module, n: int) -> None:
    b = _boxes_batch(tiny, n, seed=n)
    names = ("region_diagnosis", "region_contrastive", "region_class_alignment", "global_context")
    weights = {k: float(i + 2) for i, k in enumerate(names)}
    total, terms = RadVLSMLoss(_with_weights(weights)).region(
        tiny, b["embeddings"], b["labels"], b["diagnosis"], b["texts"], b["boxes"], b["points"]
    )
    assert set(terms) == set(names) and all(torch.isfinite(v) for v in terms.values())
    torch.testing.assert_close(total, sum(weights[k] * terms[k] for k in names))
    if n == 1:  # InfoNCE needs negatives: a batch of one skips it
        assert float(terms["region_contrastive"].detach()) == 0.0
    else:
        assert float(terms["region_contrastive"].detach()) > 0
    tiny.zero_grad()
    total.backward()
    weight = tiny.region_prompt.to_features.weight  # zero-initialised, so its gradient is what starts training
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_box_term_trains_the_user_box_decoder_alone(tiny: nn.Module) -> None:
    from radvlsm.engine.workflow import stage_parameters

    b = _boxes_batch(tiny, 2)
    stage_parameters(tiny, "box")
    total, terms = RadVLSMLoss(_with_weights({"box_mask": 2.0})).box(tiny, b["embeddings"], b["labels"], b["boxes"])
    assert set(terms) == {"box_mask"} and torch.isfinite(total) and float(terms["box_mask"].detach()) > 0
    torch.testing.assert_close(total, 2.0 * terms["box_mask"])
    tiny.zero_grad()
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny.box_decoder.parameters())
    for part in ("mask_decoder", "auto_decoder", "focus"):
        assert all(p.grad is None for p in getattr(tiny, part).parameters()), part
    for p in tiny.parameters():
        p.requires_grad_(True)


def test_box_click_term_decodes_the_box_with_a_correction_click_on_its_own_mask(tiny: nn.Module) -> None:
    from radvlsm.engine.prompt_sampling import correction_clicks
    from radvlsm.models.decode import decode_prompts

    b = _boxes_batch(tiny, 3)
    loss = RadVLSMLoss(_with_weights({"box_mask": 2.0, "box_click": 3.0}))
    total, terms = loss.box(tiny, b["embeddings"], b["labels"], b["boxes"])
    assert set(terms) == {"box_mask", "box_click"} and float(terms["box_click"].detach()) > 0
    torch.testing.assert_close(total, 2.0 * terms["box_mask"] + 3.0 * terms["box_click"])
    with torch.no_grad():  # the same term, built by hand: the click goes to the first mask's largest error
        first = decode_prompts(tiny.box_decoder, b["embeddings"], b["boxes"]).mask_logits[:, 0] > 0
        points, labels, placed = correction_clicks(first, b["labels"])
        assert bool(placed.all())  # an untrained decoder is wrong somewhere on every image
        refined = decode_prompts(tiny.box_decoder, b["embeddings"], b["boxes"], points, labels)
        expected = loss.dice_bce(refined.mask_logits[:, 0], b["labels"])
    torch.testing.assert_close(terms["box_click"].detach(), expected)
    tiny.zero_grad()
    terms["box_click"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny.box_decoder.parameters())


def test_box_term_needs_the_box_decoder(tiny_model) -> None:
    model = tiny_model(radiomics=False, tuned_box_decoder=False)
    b = _boxes_batch(model, 1)
    with pytest.raises(ValueError, match="tuned_box_decoder"):
        RadVLSMLoss().box(model, b["embeddings"], b["labels"], b["boxes"])
