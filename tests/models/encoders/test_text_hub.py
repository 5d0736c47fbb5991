"""Tests for radvlsm.models.encoders.text_hub: offline resolution of text-tower weights (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.text_hub import (
    local_model_folder,
    looks_like_path,
    minilm_model_path,
    resolve_open_clip_pretrained,
)


@pytest.mark.parametrize(
    "value, expected",
    [("weights.pt", True), ("a/b", True), ("~/w", True), ("W.SAFETENSORS", True), ("openai", False)],
)
def test_looks_like_path(value: str, expected: bool) -> None:
    assert looks_like_path(value) is expected


def test_local_model_folder_and_packaged_minilm(tmp_path: Path) -> None:
    assert local_model_folder(str(tmp_path)) == tmp_path
    assert local_model_folder(str(tmp_path / "missing")) is None
    assert local_model_folder("minilm") is None
    assert (minilm_model_path() / "config.json").is_file()


def test_open_clip_pretrained_resolves_local_files_and_none(tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"0")
    assert resolve_open_clip_pretrained("ViT-S-32", str(weights)) == str(weights)
    assert resolve_open_clip_pretrained("ViT-S-32", None) is None
    with pytest.raises(RadVLSMInputError, match="checkpoint file not found"):
        resolve_open_clip_pretrained("ViT-S-32", str(tmp_path / "missing.pt"))
    with pytest.raises(RadVLSMInputError, match="local Hugging Face cache"):
        resolve_open_clip_pretrained("hf-hub:nobody/not-cached-anywhere", None)
