"""The assembled tensor model on the tiny configuration: shapes, training mode, click completion."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny(tiny_model):
    torch.manual_seed(0)
    return tiny_model(radiomics=True, n_ctx=2).eval()


def test_forward_shapes(tiny) -> None:
    out = tiny(torch.rand(2, 1, 64, 64))
    k = tiny.candidate_generator.k + tiny.learned_prompts.tokens.shape[0]  # map candidates, then learned prompts
    assert out.cam_logits.shape == (2, 1, 32, 32)  # the focusing head doubles the 16 x 16 embedding grid
    assert out.cam.shape == (2, 1, 64, 64) and out.mask_logits.shape == (2, k, 1, 64, 64)
    assert out.cues.shape == (2, k, 5) and out.candidate_diag_logits.shape == (2, k, 2)
    assert out.fused.mask_prob.shape == (2, 1, 64, 64) and out.fused.diag_logits.shape == (2, 2)
    assert out.mask_prob.shape == (2, 1, 64, 64) and 0 <= float(out.mask_prob.min()) <= float(out.mask_prob.max()) <= 1
    torch.testing.assert_close(out.fused.weights.sum(1), torch.ones(2))
    assert ((out.candidates.boxes >= 0) & (out.candidates.boxes <= 64)).all()


def test_frozen_encoder_stays_in_eval_mode_while_training(tiny) -> None:
    from radvlsm.engine.workflow import stage_parameters

    stage_parameters(tiny, "segment")
    tiny.train()
    assert tiny.training and tiny.mask_decoder.training and not tiny.image_encoder.training
    stage_parameters(tiny, "segment", train_encoder=True)
    tiny.train()
    assert tiny.image_encoder.training
    tiny.eval()


def test_clicks_become_boxes_that_hold_them(tiny) -> None:
    emb = tiny.encode_image(torch.rand(3, 1, 64, 64))
    points = torch.tensor([[[10.0, 12.0]], [[60.0, 3.0]], [[32.0, 32.0]]])
    boxes = tiny.boxes_from_clicks(emb, points, torch.ones(3, 1, dtype=torch.long))
    assert boxes.shape == (3, 4)
    assert ((boxes >= 0) & (boxes <= 64)).all()
    for box, (x, y) in zip(boxes, points[:, 0], strict=True):
        assert box[0] <= x <= box[2] and box[1] <= y <= box[3]
    tiny.click_to_box = False
    try:
        mask_logits, *_ = tiny.forward_prompted(emb[:1], points=points[:1], point_labels=torch.ones(1, 1).long())
        assert mask_logits.shape == (1, 1, 64, 64)
    finally:
        tiny.click_to_box = True


def test_each_user_prompt_goes_to_its_decoder(tiny_model) -> None:
    """Boxes: the box-tuned copy; masks: LiteMedSAM's own decoder; clicks alone: the automatic path's copy."""
    from radvlsm.models.decode import decode_prompts

    torch.manual_seed(0)
    model = tiny_model(radiomics=False).eval()
    with torch.no_grad():  # three different decoders, so that each output names the decoder that made it
        model.box_decoder.mask_decoder.iou_token.weight.add_(0.5)
        model.auto_decoder.mask_decoder.iou_token.weight.sub_(0.5)
    emb = model.encode_image(torch.rand(1, 1, 64, 64))
    box = torch.tensor([[10.0, 12.0, 40.0, 44.0]])
    click, label = torch.tensor([[[25.0, 28.0]]]), torch.ones(1, 1, dtype=torch.long)
    with torch.no_grad():
        *_, iou = model.forward_prompted(emb, boxes=box)
        torch.testing.assert_close(iou, decode_prompts(model.box_decoder, emb, box).iou_pred[:, 0])
        assert not torch.allclose(iou, decode_prompts(model.mask_decoder, emb, box).iou_pred[:, 0])
        mask = torch.zeros(1, 1, 64, 64)
        mask[..., 12:44, 10:40] = 1
        *_, iou = model.forward_prompted(emb, mask_inputs=mask)
        expected = model.mask_decoder(emb, mask_inputs=model._mask_prompt(mask)[:, None]).iou_pred[:, 0]
        torch.testing.assert_close(iou, expected)
        *_, iou = model.forward_prompted(emb, points=click, point_labels=label)
        completed = model.boxes_from_clicks(emb, click, label)
        torch.testing.assert_close(iou, decode_prompts(model.auto_decoder, emb, completed, click, label).iou_pred[:, 0])
    model.box_decoder = None  # without the copy, boxes go to LiteMedSAM's decoder
    with torch.no_grad():
        *_, iou = model.forward_prompted(emb, boxes=box)
        torch.testing.assert_close(iou, decode_prompts(model.mask_decoder, emb, box).iou_pred[:, 0])


def test_box_refinement_redecodes_each_lesion_from_its_box(tiny_model) -> None:
    from radvlsm.models.decode import decode_prompts

    torch.manual_seed(0)
    model = tiny_model(radiomics=False).eval()
    emb = model.encode_image(torch.rand(2, 1, 64, 64))
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, 0, 5:15, 8:20] = 0.9  # two lesions in the first image, none in the second
    mask[0, 0, 40:50, 30:52] = 0.7
    mask[1, 0, 3:9, 3:9] = 0.4  # below 0.5: no lesion, the mask is kept as it is
    refined = model.refine_with_boxes(emb, mask)
    boxes = torch.tensor([[8.0, 5.0, 20.0, 15.0], [30.0, 40.0, 52.0, 50.0]])
    expected = torch.stack(
        [torch.sigmoid(decode_prompts(model.box_decoder, emb[:1], box[None]).mask_logits[0, 0, 0]) for box in boxes]
    ).amax(0)
    torch.testing.assert_close(refined[0, 0], expected, atol=1e-5, rtol=0)
    assert torch.equal(refined[1], mask[1])
    content = torch.zeros(64, 64, dtype=torch.bool)
    content[:, :48] = True  # padding on the right stays empty
    padded = model.refine_with_boxes(emb, mask, content)
    assert float(padded[0, 0, :, 48:].abs().max()) == 0.0
    torch.testing.assert_close(padded[0, 0, :, :48], expected[:, :48], atol=1e-5, rtol=0)


def test_automatic_mask_is_the_refined_fused_mask_only_with_box_refine(tiny_model) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False).eval()
    emb = model.encode_image(torch.rand(1, 1, 64, 64))
    with torch.no_grad():
        out = model(embeddings=emb)
        torch.testing.assert_close(out.mask_prob, model.refine_with_boxes(emb, out.fused.mask_prob))
        model.box_refine = False
        try:
            plain = model(embeddings=emb)
        finally:
            model.box_refine = True
    assert torch.equal(plain.mask_prob, plain.fused.mask_prob)
