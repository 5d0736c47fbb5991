"""``radvlsm.engine.iterations``: the box evaluator's corrected masks."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from radvlsm.engine.iterations import BoxEvalIteration
from radvlsm.engine.prompt_sampling import correction_clicks
from radvlsm.models.candidates import boxes_from_masks


def _batch(size: int, n: int = 2) -> dict:
    label = torch.zeros(n, 1, size, size)
    label[0, 0, size // 4 : size // 2, size // 4 : size // 2] = 1
    label[1, 0, size // 3 :, size // 5 : size // 2] = 1
    return {"image": torch.rand(n, 1, size, size), "label": label, "diagnosis": torch.tensor([0, 1])}


def test_box_evaluation_with_a_correction_click_pairs_each_box_mask_with_its_corrected_mask(tiny_model) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False).eval()
    batch = _batch(model.image_size)
    engine = SimpleNamespace(network=model, state=SimpleNamespace(device=torch.device("cpu")))
    plain = BoxEvalIteration()(engine, batch)
    out = BoxEvalIteration(correction_click=True)(engine, batch)
    assert set(plain) == {"pred", "label", "prob", "diagnosis"}
    torch.testing.assert_close(out["pred"], plain["pred"])  # the box alone is what it was
    torch.testing.assert_close(out["pred_pair"], torch.cat([out["pred"], out["pred_click"]]))
    torch.testing.assert_close(out["label_pair"], torch.cat([batch["label"], batch["label"]]))
    with torch.no_grad():  # by hand: box + the click on the box mask's largest error, on the user-box decoder
        points, labels, placed = correction_clicks(out["pred"], batch["label"])
        logits, _, _, _ = model.forward_prompted(
            model.encode_image(batch["image"]),
            boxes=boxes_from_masks(batch["label"]),
            points=points,
            point_labels=labels,
        )
    assert bool(placed.all())
    torch.testing.assert_close(out["pred_click"], (logits > 0).float())
    assert not torch.equal(out["pred_click"], out["pred"])  # the click changed the mask
