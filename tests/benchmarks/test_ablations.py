"""``benchmarks/ablations.py``: the method's parts side by side on one split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from radvlsm.data.busbra import read_busbra
from radvlsm.engine.bundle import save_model

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))  # ablations imports its sibling scripts
import ablations

TINY_NETWORK = {"variant": "tiny", "text_encoder": "tiny", "embed_dim": 32}  # as tests/conftest.py


def test_every_row_is_scored_on_every_image(phantom_dir: Path, tiny_model, tmp_path: Path) -> None:
    ids = [item["id"] for item in read_busbra(phantom_dir, validate=False).items]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"training": [], "validation": [], "test": ids[:3]}))
    path = save_model(tiny_model(radiomics=False), str(tmp_path / "model.pt"))
    out = ablations.run(str(phantom_dir), str(split), path, **TINY_NETWORK, radiomics=False)
    assert out["n_images"] == 3
    assert set(out["dice"]) == set(ablations.SEGMENTATION_ROWS)
    for name in ("automatic", "truth_box", "centre_click", "centre_click_on_lesion"):
        assert 0.0 <= out["dice"][name] <= 1.0
        interval = out["intervals"][f"dice_{name}"]
        assert interval["ci95"][0] <= interval["mean"] + 1e-9 and interval["mean"] <= interval["ci95"][1] + 1e-9
