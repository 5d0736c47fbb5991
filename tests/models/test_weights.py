"""Shipping and loading weights (``radvlsm.models.weights``): small files, exact round trip, clear errors."""

from __future__ import annotations

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import load_trained_weights, read_state_dict, trained_state_dict


def test_weights_round_trip_without_frozen_towers(tiny_model, tmp_path) -> None:
    torch.manual_seed(0)
    a = tiny_model(radiomics=False)
    state = trained_state_dict(a)
    assert not any(k.startswith(("text_encoder.", "image_encoder.")) for k in state)
    torch.save(state, tmp_path / "model.pt")
    torch.manual_seed(1)
    b = load_trained_weights(tiny_model(radiomics=False), tmp_path / "model.pt")
    for key, value in state.items():
        torch.testing.assert_close(b.state_dict()[key], value)


def test_corrupt_or_mismatched_weights_are_refused(tiny_model, tmp_path) -> None:
    model = tiny_model(radiomics=False)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RadVLSMInputError, match="cannot read"):
        load_trained_weights(model, tmp_path / "bad.pt")
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(RadVLSMInputError, match="do not fit"):
        load_trained_weights(model, tmp_path / "other.pt")
    with pytest.raises(RadVLSMInputError, match="not found"):
        load_trained_weights(model, tmp_path / "missing.pt")


def test_corrupt_nan_and_mismatched_weights_are_input_errors(tiny_model, tmp_path) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False)
    state = trained_state_dict(model)
    good = tmp_path / "good.pt"
    torch.save(state, good)
    data = good.read_bytes()
    cases = {
        "cannot read model weights": data[: len(data) // 2],
        "does not hold a state dict": None,
        "NaN": {**state, next(iter(state)): torch.full_like(next(iter(state.values())), float("nan"))},
        "wrong shapes": trained_state_dict(tiny_model(radiomics=False, embed_dim=16)),
    }
    for words, content in cases.items():
        path = tmp_path / "bad.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content if content is not None else [1, 2, 3], path)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(RadVLSMInputError, match=words):
            load_trained_weights(model, path)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), words  # untouched


def test_saved_weights_keep_values_beyond_float16_range(tiny_model, tmp_path) -> None:
    from radvlsm.engine.bundle import save_model

    torch.manual_seed(0)
    model = tiny_model(radiomics=True)
    model.standardizer.mean.fill_(1.0e6)  # radiomics features such as energy exceed 65504
    model.standardizer.mean[0] = 3.0
    path = save_model(model, str(tmp_path / "model.pt"))
    saved = torch.load(path, weights_only=True)
    assert saved["standardizer.mean"].dtype == torch.float32 and torch.isfinite(saved["standardizer.mean"]).all()
    assert any(v.dtype == torch.float16 for v in saved.values())  # the rest is still compacted
    other = tiny_model(radiomics=True)
    load_trained_weights(other, path)
    torch.testing.assert_close(other.standardizer.mean, model.standardizer.mean)


def test_state_dicts_are_unwrapped_from_checkpoints(tmp_path) -> None:
    tensor = torch.ones(2)
    torch.save({"model": {"module.head.weight": tensor}}, tmp_path / "ckpt.pt")
    assert list(read_state_dict(tmp_path / "ckpt.pt")) == ["head.weight"]
    torch.save({"state_dict": {"a": tensor}, "epoch": 3}, tmp_path / "lightning.pt")
    assert list(read_state_dict(tmp_path / "lightning.pt")) == ["a"]


def test_an_untuned_decoder_is_not_shipped_and_loads_from_the_package(tiny_model, tmp_path) -> None:
    from radvlsm.engine.bundle import save_model

    model = tiny_model(radiomics=False)
    path = save_model(model, str(tmp_path / "m.pt"))
    state = torch.load(path, weights_only=True)
    assert not any(k.startswith("mask_decoder.") for k in state)
    assert any(k.startswith("learned_prompts.") for k in state) and any(k.startswith("focus.") for k in state)
    fresh = tiny_model(radiomics=False)
    with torch.no_grad():
        fresh.mask_decoder.mask_decoder.iou_token.weight.add_(1.0)  # a changed decoder stays as built
    kept = fresh.mask_decoder.mask_decoder.iou_token.weight.clone()
    load_trained_weights(fresh, path)
    torch.testing.assert_close(fresh.mask_decoder.mask_decoder.iou_token.weight, kept)
    torch.testing.assert_close(fresh.learned_prompts.tokens, model.learned_prompts.tokens.half().float())
    # a file that ships a tuned decoder (older model.pt files) still loads it
    full = {**state, **{f"mask_decoder.{k}": v for k, v in model.mask_decoder.state_dict().items()}}
    torch.save(full, tmp_path / "tuned.pt")
    load_trained_weights(fresh, tmp_path / "tuned.pt")
    torch.testing.assert_close(
        fresh.mask_decoder.mask_decoder.iou_token.weight, model.mask_decoder.mask_decoder.iou_token.weight
    )


def test_the_box_decoder_copy_is_shipped_only_when_tuned(tiny_model, tmp_path) -> None:
    from radvlsm.engine.bundle import save_model

    model = tiny_model(radiomics=False)
    state = torch.load(save_model(model, str(tmp_path / "same.pt")), weights_only=True)
    assert not any(k.startswith("box_decoder.") for k in state)  # still LiteMedSAM's weights: nothing to ship
    fresh = tiny_model(radiomics=False)
    load_trained_weights(fresh, tmp_path / "same.pt")
    for a, b in zip(fresh.box_decoder.state_dict().values(), fresh.mask_decoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # a file without it (0.6 and older) gives the untouched copy
    with torch.no_grad():
        model.box_decoder.mask_decoder.iou_token.weight.add_(0.25)
    state = torch.load(save_model(model, str(tmp_path / "tuned.pt")), weights_only=True)
    assert any(k.startswith("box_decoder.") for k in state) and not any(k.startswith("mask_decoder.") for k in state)
    load_trained_weights(fresh, tmp_path / "tuned.pt")
    torch.testing.assert_close(
        fresh.box_decoder.mask_decoder.iou_token.weight, model.box_decoder.mask_decoder.iou_token.weight.half().float()
    )
    token = fresh.box_decoder.mask_decoder.iou_token.weight
    assert not torch.equal(token, fresh.mask_decoder.mask_decoder.iou_token.weight)
