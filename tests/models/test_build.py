"""Building the model and shipping its weights: small files, exact round trip, clear errors."""

from __future__ import annotations

import pytest
import torch

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.build import build_radvlsm, load_trained_weights, trained_state_dict


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
