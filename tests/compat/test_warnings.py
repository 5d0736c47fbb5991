"""Quiet output: our commands print no deprecation warnings, and the third-party filters stay narrow.

pytest's ``filterwarnings`` (pyproject.toml) ignores DeprecationWarning/FutureWarning in-process, so the
check runs the commands in a fresh interpreter with ``-W default`` (every warning shown once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from radvlsm.compat.warnings import THIRD_PARTY_WARNINGS, filter_third_party_warnings

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("DeprecationWarning", "FutureWarning", "is deprecated", "NvImgCodec", "nvImageCodec")

SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from radvlsm.cli import main
from radvlsm.data.image_io import read_image_2d
from radvlsm.data.transforms import get_transforms
from radvlsm.config import build_network
from radvlsm.predictor import RadVLSMPredictor

out = Path(sys.argv[1])
assert main(["phantom", "--out", str(out / "phantom"), "--n-images", "4"]) == 0
get_transforms("infer")
predictor = RadVLSMPredictor(build_network(variant="tiny", text_encoder="tiny", embed_dim=32, radiomics=False))
predictor.set_image(read_image_2d(sorted((out / "phantom" / "Images").glob("*.png"))[0]))
predictor.predict()
try:
    main(["--help"])
except SystemExit:
    pass
print("done")
"""


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-W", "default", *args], capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.timeout(300)
def test_commands_print_no_deprecation_warnings(tmp_path: Path) -> None:
    result = _run(["-c", SCRIPT, str(tmp_path)])
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-3000:]
    noisy = [line for line in result.stderr.splitlines() if any(word in line for word in NOISE)]
    assert not noisy, "\n".join(noisy)


def test_filters_match_only_their_own_message_and_module() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        filter_third_party_warnings()
        filter_third_party_warnings()  # idempotent
        assert len(warnings.filters) == len(THIRD_PARTY_WARNINGS) + 1
        message = "Importing from timm.models.layers is deprecated, please import via timm.layers"
        warnings.warn_explicit(message, FutureWarning, "layers/__init__.py", 1, module="timm.models.layers")
        warnings.warn_explicit(message, FutureWarning, "ours.py", 1, module="radvlsm.models.build")
        warnings.warn_explicit("something else is deprecated", FutureWarning, "x.py", 1, module="timm.models.layers")
        warnings.warn_explicit(message, DeprecationWarning, "layers/__init__.py", 1, module="timm.models.layers")
    assert [(w.category, w.filename) for w in caught] == [
        (FutureWarning, "ours.py"),
        (FutureWarning, "x.py"),
        (DeprecationWarning, "layers/__init__.py"),
    ]


def test_the_log_filter_drops_only_the_nvimagecodec_record(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    filter_third_party_warnings()
    logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("nvImageCodec is not available; skipping pydicom decoder plugin registration.")
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]
