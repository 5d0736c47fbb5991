"""Killing the bundle's training with SIGKILL mid-epoch and running the same command again continues from
the last checkpoint (the finished epochs are not redone), and a torn checkpoint file is skipped.

The training runs exactly as documented (``python -m monai.bundle run training``) on the tiny model; for
the first run only, an extra config file slows each iteration down (0.25 s) so the kill lands mid-epoch.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"
TINY = ["--network_def#variant", "tiny", "--network_def#text_encoder", "tiny", "--network_def#embed_dim", "32"]
EPOCHS_ALIGN = 6
KILL_AT = (3, 2)  # epoch, iteration: the log line after which the run is killed
SLOW = {
    "initialize": [
        "$monai.utils.set_determinism(seed=@seed)",
        "$logging.getLogger('radvlsm').setLevel(logging.INFO)",
        # (MONAI parses any expression holding the word "import" as an import statement: none here)
        "$@trainer_align.add_event_handler(monai.engines.workflow.Events.ITERATION_COMPLETED, "
        "lambda engine: logging.time.sleep(0.25))",
    ]
}


def command(work: Path, *extra_configs: Path) -> list[str]:
    configs = [str(BUNDLE / "configs" / "train.json"), *map(str, extra_configs)]
    return [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", json.dumps(configs) if extra_configs else configs[0],
        "--logging_file", str(BUNDLE / "configs" / "logging.conf"),
        *TINY,
        "--dataset_dir", str(work / "phantom"), "--phantom_images", "12", "--batch_size", "1",
        "--output_dir", str(work / "runs"),
        "--epochs_align", str(EPOCHS_ALIGN), "--epochs_segment", "1", "--epochs_fusion", "5",
    ]  # fmt: skip


def epochs_logged(log: str) -> list[int]:
    """Align epochs in the order their first iteration was logged."""
    seen: list[int] = []
    for epoch in re.findall(rf"Epoch: (\d+)/{EPOCHS_ALIGN}, Iter: 1/", log):
        if int(epoch) not in seen:
            seen.append(int(epoch))
    return seen


def run_until_killed(cmd: list[str], log_path: Path, timeout_s: float = 300) -> str:
    """Start ``cmd``; SIGKILL its process group right after the :data:`KILL_AT` iteration is logged."""
    marker = f"Epoch: {KILL_AT[0]}/{EPOCHS_ALIGN}, Iter: {KILL_AT[1]}/"
    with open(log_path, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while marker not in log_path.read_text():
            assert process.poll() is None, f"training ended before the kill:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return log_path.read_text()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_restart_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps(SLOW))
    runs = tmp_path / "runs"
    first = run_until_killed(command(tmp_path, slow), tmp_path / "first.log")
    assert epochs_logged(first) == [1, 2, 3]
    saved = sorted(p.name for p in runs.glob("checkpoint_align_*.pt"))
    assert saved == ["checkpoint_align_checkpoint_epoch=1.pt", "checkpoint_align_checkpoint_epoch=2.pt"], saved
    assert not (runs / "model.pt").exists()
    # a kill during a non-atomic write would leave a torn newest file: the restart must not trust it
    good = (runs / "checkpoint_align_checkpoint_epoch=2.pt").read_bytes()
    (runs / "checkpoint_align_checkpoint_epoch=3.pt").write_bytes(good[: len(good) // 2])

    second = subprocess.run(command(tmp_path), capture_output=True, text=True, timeout=600)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-5000:]
    assert "checkpoint_align_checkpoint_epoch=3.pt (epoch 3) cannot be read" in log
    assert "resuming stage align from" in log and "checkpoint_align_checkpoint_epoch=2.pt" in log
    assert epochs_logged(log) == [3, 4, 5, 6], "the restart redid finished epochs"
    assert (runs / "model.pt").is_file()
    assert sorted(p.name for p in runs.glob("checkpoint_align_*.pt")) == [
        "checkpoint_align_checkpoint_epoch=5.pt",
        "checkpoint_align_checkpoint_epoch=6.pt",
    ]
    assert (runs / "checkpoint_align_checkpoint_epoch=3.pt.corrupt").is_file()
