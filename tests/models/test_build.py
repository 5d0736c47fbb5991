"""Building the model and shipping its weights: small files, exact round trip, clear errors."""

from __future__ import annotations

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.build import build_radvlsm, load_trained_weights, trained_state_dict, with_embedding_cache


def test_unknown_variant_and_missing_checkpoint() -> None:
    with pytest.raises(RadVLSMInputError, match="variant"):
        build_radvlsm("huge")
    with pytest.raises(RadVLSMInputError, match="not found"):
        build_radvlsm("tiny", sam_checkpoint="/nonexistent/sam.pth")


def test_weights_round_trip_without_frozen_towers(tmp_path) -> None:
    torch.manual_seed(0)
    a = build_radvlsm("tiny", radiomics=False)
    state = trained_state_dict(a)
    assert not any(k.startswith(("text_encoder.", "image_encoder.")) for k in state)
    torch.save(state, tmp_path / "model.pt")
    torch.manual_seed(1)
    b = load_trained_weights(build_radvlsm("tiny", radiomics=False), tmp_path / "model.pt")
    for key, value in state.items():
        torch.testing.assert_close(b.state_dict()[key], value)


def test_corrupt_or_mismatched_weights_are_refused(tmp_path) -> None:
    model = build_radvlsm("tiny", radiomics=False)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RadVLSMInputError, match="cannot read"):
        load_trained_weights(model, tmp_path / "bad.pt")
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(RadVLSMInputError, match="do not fit"):
        load_trained_weights(model, tmp_path / "other.pt")
    with pytest.raises(RadVLSMInputError, match="not found"):
        load_trained_weights(model, tmp_path / "missing.pt")


def test_disk_embedding_cache_is_reused_and_keyed_by_encoder_weights(tmp_path) -> None:
    first = with_embedding_cache(build_radvlsm(variant="tiny", text_encoder="tiny"), tmp_path / "emb").eval()
    image = torch.rand(1, 1, first.image_size, first.image_size)
    reference = first.embedding_cache.get_or_compute(image, first.image_encoder)
    assert len(list((tmp_path / "emb").glob("*.pt"))) == 1

    torch.manual_seed(0)
    again = build_radvlsm(variant="tiny", text_encoder="tiny")
    again.image_encoder.load_state_dict(first.image_encoder.state_dict())
    again = with_embedding_cache(again, tmp_path / "emb").eval()
    assert torch.allclose(again.embedding_cache.get_or_compute(image, again.image_encoder), reference, atol=1e-2)
    assert again.embedding_cache.hits == 1 and again.embedding_cache.misses == 0

    tuned = build_radvlsm(variant="tiny", text_encoder="tiny")
    with torch.no_grad():
        next(tuned.image_encoder.parameters()).add_(1.0)
    tuned = with_embedding_cache(tuned, tmp_path / "emb").eval()
    tuned.embedding_cache.get_or_compute(image, tuned.image_encoder)
    assert tuned.embedding_cache.misses == 1  # other encoder weights never read the first model's files
    assert with_embedding_cache(tuned, "").embedding_cache is tuned.embedding_cache


def test_corrupt_nan_and_mismatched_weights_are_input_errors(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_radvlsm("tiny", radiomics=False)
    state = trained_state_dict(model)
    good = tmp_path / "good.pt"
    torch.save(state, good)
    data = good.read_bytes()
    cases = {
        "cannot read model weights": data[: len(data) // 2],
        "not a state dict": None,
        "NaN": {**state, next(iter(state)): torch.full_like(next(iter(state.values())), float("nan"))},
        "wrong shapes": trained_state_dict(build_radvlsm("tiny", radiomics=False, embed_dim=16)),
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


def test_saved_weights_keep_values_beyond_float16_range(tmp_path) -> None:
    from radvlsm.engine.bundle import save_model

    torch.manual_seed(0)
    model = build_radvlsm("tiny", text_encoder="tiny", embed_dim=32, radiomics=True)
    model.standardizer.mean.fill_(1.0e6)  # radiomics features such as energy exceed 65504
    model.standardizer.mean[0] = 3.0
    path = save_model(model, str(tmp_path / "model.pt"))
    saved = torch.load(path, weights_only=True)
    assert saved["standardizer.mean"].dtype == torch.float32 and torch.isfinite(saved["standardizer.mean"]).all()
    assert any(v.dtype == torch.float16 for v in saved.values())  # the rest is still compacted
    other = build_radvlsm("tiny", text_encoder="tiny", embed_dim=32, radiomics=True)
    load_trained_weights(other, path)
    torch.testing.assert_close(other.standardizer.mean, model.standardizer.mean)
