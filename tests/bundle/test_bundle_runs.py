"""The bundle as MONAI users run it: metadata verification, training, evaluation and inference commands.

Each command runs in a subprocess exactly as documented, on the tiny model and a small phantom.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "radvlsm_breast_us"
TINY = ["--network_def#variant", "tiny", "--network_def#text_encoder", "tiny", "--network_def#embed_dim", "32"]


def run_bundle(run_id: str, config: str | list[str], *args: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` with one config file, or a list merged in order (e.g. a delta)."""
    files = [str(BUNDLE / "configs" / c) for c in ([config] if isinstance(config, str) else config)]
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", run_id,
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", files[0] if len(files) == 1 else str(files),
        "--logging_file", str(BUNDLE / "configs" / "logging.conf"),
        *args,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_metadata_verifies_against_the_local_schema() -> None:
    cmd = [
        sys.executable, "-m", "monai.bundle", "verify_metadata",
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--filepath", str(ROOT / "bundles" / "schema" / "meta_schema_20240725.json"),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "metadata is verified with no error" in result.stdout + result.stderr


@pytest.mark.slow
def test_verify_net_in_out_on_the_real_network() -> None:
    """MONAI's shape/dtype check of the shipped architecture, through the tensor-in/tensor-out mask adapter."""
    cmd = [
        sys.executable, "-m", "monai.bundle", "verify_net_in_out", "mask_network_def",
        "--bundle_root", str(BUNDLE),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


def test_mask_adapter_returns_the_automatic_mask_probability(tiny_model) -> None:
    import torch

    from radvlsm.engine.inference import MaskOutput

    model = tiny_model(radiomics=False).eval()
    images = torch.rand(2, 1, model.image_size, model.image_size)
    with torch.no_grad():
        mask = MaskOutput(model)(images)
        expected = model(images=images).mask_prob
    assert mask.shape == (2, 1, model.image_size, model.image_size) and mask.dtype == torch.float32
    assert torch.equal(mask, expected) and 0 <= float(mask.min()) <= float(mask.max()) <= 1
    assert set(MaskOutput(model).state_dict()) == {f"model.{k}" for k in model.state_dict()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bundle")
    run_bundle(
        "training", "train.json", *TINY,
        "--dataset_dir", str(work / "phantom"), "--phantom_images", "12",
        "--output_dir", str(work / "runs"),
        "--epochs_align", "1", "--epochs_segment", "2", "--epochs_region", "2", "--epochs_fusion", "5",
    )  # fmt: skip
    return work


@pytest.mark.slow
def test_training_writes_model_split_and_checkpoints(trained: Path) -> None:
    runs = trained / "runs"
    assert (runs / "model.pt").is_file() and (runs / "split.json").is_file()
    split = json.loads((runs / "split.json").read_text())
    assert set(split) >= {"training", "validation", "test"}
    assert list(runs.glob("checkpoint_segment_checkpoint_epoch=2.pt"))
    assert list(runs.glob("checkpoint_region_checkpoint_epoch=2.pt"))
    metrics = json.loads((runs / "model.json").read_text())
    auc = metrics["region_val_auc"]
    assert auc != auc or 0 <= auc <= 1  # NaN when the tiny validation split holds one class
    assert metrics["box_decoder"] in ("tuned", "litemedsam") and (runs / "box_best.pt").is_file()
    assert metrics["box_val_dice"] >= metrics["box_val_dice_litemedsam"]


def retrain_part(trained: Path, run_id: str, epochs: tuple[str, str], prefixes: tuple[str, ...]) -> tuple[dict, list]:
    """Run ``run_id`` on top of the trained ``model.pt``; check that only weights under ``prefixes`` changed.

    Returns:
        the new run's ``model.json`` and the names of the retrained tensors.
    """
    import torch

    out = trained / f"{run_id}_runs"
    run_bundle(
        run_id, "train.json", *TINY,
        "--dataset_dir", str(trained / "phantom"), "--output_dir", str(out),
        "--initial_weights", str(trained / "runs" / "model.pt"), *epochs,
    )  # fmt: skip
    before = torch.load(trained / "runs" / "model.pt", weights_only=True)
    after = torch.load(out / "model.pt", weights_only=True)
    assert set(before) == set(after)
    part = [k for k in after if k.startswith(prefixes)]
    assert part and all(torch.equal(before[k], after[k]) for k in after if k not in part)
    assert any(not torch.equal(before[k], after[k]) for k in part)
    assert all(torch.isfinite(after[k]).all() for k in part)
    return json.loads((out / "model.json").read_text()), part


@pytest.mark.slow
def test_region_training_continues_from_shipped_weights(trained: Path) -> None:
    """``region_training`` trains only the region path on top of a model.pt; everything else is kept."""
    metrics, _ = retrain_part(
        trained, "region_training", ("--epochs_region", "2"), ("region_prompt.", "region_context.")
    )
    assert metrics["region_epochs"] == 2 and "best_val_dice" in metrics  # the earlier metrics are kept


@pytest.mark.slow
def test_focus_training_retrains_the_focusing_head_and_what_depends_on_its_map(trained: Path) -> None:
    """``focus_training``: focus stage, then segment and fusion on top of a model.pt; alignment, learned prompts,
    the user-box and region paths are kept."""
    import torch

    retrained = ("focus.", "auto_decoder.", "reliability_head.", "diagnosis_head.", "mcra.", "fusion.", "standardizer.")
    metrics, part = retrain_part(
        trained, "focus_training", ("--epochs_focus", "2", "--epochs_segment", "1", "--epochs_fusion", "5"), retrained
    )
    assert metrics["focus_epochs"] == 2 and "region_val_auc" in metrics  # the earlier metrics are kept
    before = torch.load(trained / "runs" / "model.pt", weights_only=True)
    after = torch.load(trained / "focus_training_runs" / "model.pt", weights_only=True)
    assert any(not torch.equal(before[k], after[k]) for k in part if k.startswith("focus."))
    assert list((trained / "focus_training_runs").glob("checkpoint_focus_checkpoint_epoch=2.pt"))


@pytest.mark.slow
def test_box_training_tunes_only_the_box_decoder_and_keeps_it_only_when_better(trained: Path) -> None:
    """``box_training`` retunes the user-box copy from LiteMedSAM's weights on top of a model.pt; the rest is kept."""
    import torch

    out = trained / "box_training_runs"
    run_bundle(
        "box_training", "train.json", *TINY,
        "--dataset_dir", str(trained / "phantom"), "--output_dir", str(out),
        "--initial_weights", str(trained / "runs" / "model.pt"), "--epochs_box", "2", "--lr_box", "0.003",
    )  # fmt: skip
    before = torch.load(trained / "runs" / "model.pt", weights_only=True)
    after = torch.load(out / "model.pt", weights_only=True)
    metrics = json.loads((out / "model.json").read_text())
    assert metrics["box_epochs"] == 2 and "best_val_dice" in metrics  # the earlier metrics are kept
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("box_decoder."))
    rest = [{k for k in state if not k.startswith("box_decoder.")} for state in (before, after)]
    assert rest[0] == rest[1]
    shipped = [k for k in after if k.startswith("box_decoder.")]
    if metrics["box_decoder"] == "tuned":  # tuning won on validation: the copy ships
        assert shipped and metrics["box_val_dice"] > metrics["box_val_dice_litemedsam"]
    else:  # LiteMedSAM's weights won: nothing of the copy ships, so the file loads as LiteMedSAM for boxes
        assert not shipped and metrics["box_val_dice"] == metrics["box_val_dice_litemedsam"]


@pytest.mark.slow
def test_evaluating_all_images_writes_metrics(trained: Path) -> None:
    out = trained / "eval"
    run_bundle(
        "evaluating", "evaluate.json", *TINY,
        "--dataset_dir", str(trained / "phantom"), "--split", "all",
        "--model_path", str(trained / "runs" / "model.pt"), "--output_dir", str(out), "--n_overlays", "2",
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("n_images", "dice", "iou", "hd95", "auc", "accuracy", "sensitivity", "specificity", "dice_box"):
        assert key in metrics
    assert metrics["n_images"] == 12 and 0 <= metrics["dice"] <= 1
    assert len(list((out / "overlays").glob("*.png"))) == 2
    assert (out / "per_image.csv").read_text().count("\n") == 13
    # the model-zoo way, evaluate.json as a delta over train.json, gives the same metrics
    run_bundle(
        "evaluating", ["train.json", "evaluate.json"], *TINY,
        "--dataset_dir", str(trained / "phantom"), "--split", "all",
        "--model_path", str(trained / "runs" / "model.pt"), "--output_dir", str(trained / "eval2"), "--n_overlays", "0",
    )  # fmt: skip
    again = json.loads((trained / "eval2" / "metrics.json").read_text())
    for key in ("n_images", "dice", "dice_box", "auc"):
        assert again[key] == metrics[key] or (again[key] != again[key] and metrics[key] != metrics[key]), key


@pytest.mark.slow
def test_inferring_a_folder_writes_masks_and_json(trained: Path) -> None:
    out = trained / "pred"
    run_bundle(
        "inferring", "inference.json", *TINY,
        "--input_dir", str(trained / "phantom" / "Images"),
        "--model_path", str(trained / "runs" / "model.pt"), "--output_dir", str(out),
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == summary["n_done"] == 12
    first = sorted((trained / "phantom" / "Images").glob("*.png"))[0]
    from PIL import Image

    assert Image.open(out / f"{first.stem}_mask.png").size == Image.open(first).size
    assert json.loads((out / f"{first.stem}.json").read_text())["diagnosis"] in ("benign", "malignant")


@pytest.mark.slow
def test_fusion_training_refits_only_the_radiomics_fusion(trained: Path) -> None:
    """``fusion_training`` refits the standardiser and fusion head on top of a model.pt; the rest is kept."""
    metrics, _ = retrain_part(trained, "fusion_training", ("--epochs_fusion", "3"), ("fusion.", "standardizer."))
    assert metrics["fusion_epochs"] == 3 and "best_val_dice" in metrics


def test_declared_preprocessing_is_the_library_pipeline(phantom_dir: Path) -> None:
    """``train.json``'s ``preprocessing`` (a Compose declared in JSON) gives what ``get_transforms("eval")`` gives."""
    import torch

    from radvlsm.config import bundle_parser
    from radvlsm.data.datalist import load_dataset
    from radvlsm.data.transforms import get_transforms

    parser = bundle_parser(BUNDLE, "train.json", {"network_def#variant": "tiny", "network_def#text_encoder": "tiny"})
    declared = parser.get_parsed_content("preprocessing")
    item = load_dataset(phantom_dir).items[0]
    a, b = declared(dict(item)), get_transforms("eval", image_size=64)(dict(item))
    assert set(a) == set(b)
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def test_evaluate_json_shares_train_json_data_keys() -> None:
    """``evaluate.json`` stays runnable alone (the documented interface); its shared keys equal ``train.json``'s."""
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    evaluate = json.loads((BUNDLE / "configs" / "evaluate.json").read_text())
    for key in ("bundle_root", "ckpt_dir", "device", "network_def", "seed", "dataset_dir", "phantom_images", "dataset"):
        assert evaluate[key] == train[key], key
