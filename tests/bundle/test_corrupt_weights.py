"""The bundle's inference refuses a corrupt ``model.pt`` with a message naming the file and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"
TINY = ["--network_def#variant", "tiny", "--network_def#text_encoder", "tiny", "--network_def#embed_dim", "32"]


def test_inferring_with_a_truncated_model_fails_with_a_clear_message(tmp_path: Path) -> None:
    shipped = (BUNDLE / "models" / "model.pt").read_bytes()
    weights = tmp_path / "model.pt"
    weights.write_bytes(shipped[: len(shipped) // 2])  # a copy cut short
    (tmp_path / "images").mkdir()
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "inferring",
        "--bundle_root", str(BUNDLE),
        "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--logging_file", str(BUNDLE / "configs" / "logging.conf"),
        *TINY,
        "--input_dir", str(tmp_path / "images"), "--output_dir", str(tmp_path / "out"),
        "--model_path", str(weights),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert f"RadVLSMInputError: {weights}: cannot read model weights" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "out").exists()
