"""Tests for radvlsm.models.encoders.image_encoder (tiny config; real LiteMedSAM weights marked slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.image_encoder import (
    ImageEncoder,
    build_image_encoder,
    image_encoder_config,
    litemedsam_checkpoint_path,
    load_checkpoint_state,
)


@pytest.fixture(scope="module")
def tiny() -> ImageEncoder:
    return build_image_encoder("tiny")


def test_tiny_shapes_and_attributes(tiny: ImageEncoder) -> None:
    assert (tiny.image_size, tiny.embed_dim, tiny.embedding_size) == (64, 32, 16)
    out = tiny(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 32, 16, 16)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_one_channel_is_repeated_to_three(tiny: ImageEncoder) -> None:
    image = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(tiny(image), tiny(image.repeat(1, 3, 1, 1)))


def test_tiny_build_is_deterministic(tiny: ImageEncoder) -> None:
    image = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(build_image_encoder("tiny")(image), tiny(image))


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((1, 1, 32, 32), torch.float32),
        ((1, 2, 64, 64), torch.float32),
        ((1, 64, 64), torch.float32),
        ((1, 1, 64, 64), torch.uint8),
    ],
)
def test_bad_image_raises(tiny: ImageEncoder, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    with pytest.raises(RadVLSMInputError, match="image"):
        tiny(torch.zeros(shape, dtype=dtype))


def test_unknown_variant() -> None:
    with pytest.raises(RadVLSMInputError, match="variant"):
        image_encoder_config("huge")


def test_gradients_flow_in_train_mode() -> None:
    encoder = build_image_encoder("tiny").train()
    image = torch.rand(1, 1, 64, 64, requires_grad=True)
    encoder(image).square().mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def _other_tiny() -> ImageEncoder:
    torch.manual_seed(1)
    other = ImageEncoder(image_encoder_config("tiny"))
    with torch.no_grad():  # non-trivial attention biases so a stale eval-mode cache would show
        for name, p in other.named_parameters():
            if name.endswith("attention_biases"):
                p.normal_()
    return other.eval()


def test_load_state_dict_refreshes_eval_attention_bias_cache(tiny: ImageEncoder) -> None:
    other = _other_tiny()
    target = build_image_encoder("tiny")  # already in eval mode (cached biases computed)
    target.load_state_dict(other.state_dict())
    image = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(target(image), other(image))


@pytest.mark.parametrize("prefix", ["", "image_encoder."])
def test_checkpoint_round_trip(tmp_path: Path, prefix: str) -> None:
    other = _other_tiny()
    state = {prefix + k: v for k, v in other.state_dict().items()}
    if prefix:  # a full LiteMedSAM-style dict: decoder keys are ignored
        state["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    path = tmp_path / "enc.pth"
    torch.save({"model": state}, path)
    loaded = build_image_encoder("tiny", checkpoint=path)
    image = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(loaded(image), other(image))


def test_checkpoint_mismatch_lists_keys(tmp_path: Path, tiny: ImageEncoder) -> None:
    state = dict(tiny.state_dict())
    state.pop("neck.0.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(RadVLSMInputError, match=r"1 missing \(neck\.0\.weight\).*1 unexpected \(extra\.weight\)"):
        build_image_encoder("tiny", checkpoint=path)


def test_wrong_architecture_checkpoint_is_clear() -> None:
    with pytest.raises(RadVLSMInputError, match="wrong shape"):
        build_image_encoder("tiny", checkpoint=litemedsam_checkpoint_path())


def test_missing_and_unreadable_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(RadVLSMInputError, match="not found"):
        build_image_encoder("tiny", checkpoint=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(RadVLSMInputError, match=r"junk\.pth"):
        load_checkpoint_state(junk)


def test_random_full_size_encoder_differs_from_pretrained() -> None:
    encoder = build_image_encoder("litemedsam", pretrained=False)
    assert (encoder.image_size, encoder.embed_dim, encoder.embedding_size) == (256, 256, 64)
    packaged = load_checkpoint_state(litemedsam_checkpoint_path())
    assert not torch.equal(encoder.state_dict()["neck.0.weight"], packaged["image_encoder.neck.0.weight"])


@pytest.mark.slow
def test_litemedsam_weights_load_and_encode() -> None:
    encoder = build_image_encoder("litemedsam")
    packaged = load_checkpoint_state(litemedsam_checkpoint_path())
    expected = {k.removeprefix("image_encoder."): v for k, v in packaged.items() if k.startswith("image_encoder.")}
    state = encoder.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    with torch.inference_mode():
        out = encoder(torch.rand(1, 1, 256, 256))
    assert out.shape == (1, 256, 64, 64)
    assert torch.isfinite(out).all()
