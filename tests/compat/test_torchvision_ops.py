"""The torchvision start-up shim: installed by the README's install, harmless where not needed."""

from __future__ import annotations

import subprocess
import sys

from radvlsm.compat import torchvision_ops


def test_fresh_interpreter_imports_open_clip_and_segment_anything() -> None:
    # A new interpreter gets the hook from the .pth that scripts/install.sh wrote.
    code = "import open_clip, segment_anything, torchvision; print(torchvision.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert torchvision_ops.pth_path().is_file()


def test_shim_only_acts_when_compiled_ops_fail(monkeypatch) -> None:
    monkeypatch.setattr(torchvision_ops, "_LIBRARY", None)
    monkeypatch.setattr(torchvision_ops, "_compiled_ops_load", lambda: True)
    assert torchvision_ops.ensure_torchvision_ops() is False
    assert torchvision_ops._LIBRARY is None


def test_finder_ignores_other_modules() -> None:
    finder = torchvision_ops.TorchvisionOpsFinder()
    assert finder.find_spec("numpy") is None
