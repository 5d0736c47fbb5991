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
