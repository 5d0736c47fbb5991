"""Diagnosis probes: is the fused diagnosis held back by its heads, or by the features they read?

The bundle's own ``fusion_loader`` (the training images) and ``val_loader`` (validation) from ``train.json`` run
the automatic pipeline once, exactly as the fusion stage does (``collect_fusion_inputs``: the fused region
embedding, the visual diagnosis logits, the radiomics of the predicted mask). On those fixed features, scored by
validation AUC with a 95% bootstrap interval and the paired difference to the shipped fused diagnosis:

- ``shipped_visual`` / ``shipped_fused``: the model's visual logits and its radiomics-fused logits;
- ``refit_fusion_seed<S>``: the fusion head trained again with the bundle's recipe (``epochs_fusion``,
  ``lr_fusion``, ``fusion_weight_decay``), seed ``S``: how much of a result is the seed;
- ``logistic_<features>_l2_<L>``: an L2-penalised logistic regression (L-BFGS, features z-scored on the training
  images) on the visual embedding, the standardised radiomics or both: a linear probe of the same features.

Validation only: this chooses; the test split is for the bundle's evaluation of what was chosen.

Usage::

    python benchmarks/diagnosis_probe.py --dataset_dir ../shared/data/bus-bra --split_file SPLIT.json \
        --model_path model.pt --embedding_cache_dir EMB --out diagnosis_probe.json [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

import numpy as np
import torch
from ablations import _auc, _ci, start  # this folder is on sys.path when run as a script

from radvlsm.config import bundle_parser
from radvlsm.engine.workflow import collect_fusion_inputs, fit_fusion
from radvlsm.models.weights import load_trained_weights

logger = logging.getLogger("benchmarks.diagnosis_probe")

L2_GRID = (0.01, 0.03, 0.1, 0.3)


def collect(bundle_root: str, model_path: str, overrides: dict) -> tuple[torch.nn.Module, dict, dict, dict]:
    """The trained network, the fusion stage's inputs on the training and validation images, and the recipe.

    Args:
        bundle_root: the bundle folder (its ``configs/train.json`` declares the loaders).
        model_path: the trained weights.
        overrides: ``train.json`` ids to set (``dataset_dir``, ``split_file``, ``output_dir``, ...).

    Returns:
        network (eval mode), training inputs, validation inputs, ``{epochs, lr, weight_decay}`` of the fusion stage.
    """
    parser = bundle_parser(bundle_root, "train.json", overrides)
    model = load_trained_weights(parser.get_parsed_content("network"), model_path).eval()
    cache = parser.get_parsed_content("embedding_cache")
    device = parser.get_parsed_content("device")
    train = collect_fusion_inputs(model, parser.get_parsed_content("fusion_loader"), cache, device)
    val = collect_fusion_inputs(model, parser.get_parsed_content("val_loader"), cache, device)
    recipe = {
        "epochs": int(parser.get_parsed_content("epochs_fusion")),
        "lr": float(parser.get_parsed_content("lr_fusion")),
        "weight_decay": float(parser.get_parsed_content("fusion_weight_decay")),
    }
    return model, train, val, recipe


def logistic_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Malignancy probabilities of an L2-penalised logistic regression (mean log-loss + ``l2 / 2 * |w|^2``).

    Features are z-scored with the training images' statistics; the bias is not penalised.

    Returns:
        probabilities on the training and on the evaluated features.
    """
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.as_tensor((x_train - mean) / std, dtype=torch.float64)
    xe = torch.as_tensor((x_eval - mean) / std, dtype=torch.float64)
    y = torch.as_tensor(y_train, dtype=torch.float64)
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, y) + 0.5 * l2 * (w @ w)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return torch.sigmoid(xt @ w + b).numpy(), torch.sigmoid(xe @ w + b).numpy()


def _malignant(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.detach().float(), -1)[:, 1].numpy()


@torch.no_grad()
def _fused(model: torch.nn.Module, inputs: dict) -> np.ndarray:
    std = model.standardizer(inputs["radiomics"])
    return _malignant(model.fusion(inputs["visual_emb"], std, inputs["visual_logits"]))


def score(
    rows: dict[str, tuple[np.ndarray, np.ndarray]], y_train: np.ndarray, y_val: np.ndarray, n_boot: int = 1000
) -> dict:
    """Training and validation AUC of each row, a bootstrap interval and the paired difference to ``shipped_fused``."""
    idx = np.random.default_rng(0).integers(0, len(y_val), size=(n_boot, len(y_val)))

    def auc_and_boot(p_val: np.ndarray) -> tuple[float, np.ndarray]:
        return _auc(p_val, y_val), np.array([_auc(p_val[i], y_val[i]) for i in idx])

    ref_auc, ref_boot = auc_and_boot(rows["shipped_fused"][1])
    out = {}
    for name, (p_train, p_val) in rows.items():
        auc, boot = auc_and_boot(p_val)
        out[name] = {
            "train_auc": _auc(p_train, y_train),
            "validation_auc": {"mean": auc, "ci95": _ci(boot)},
            "difference_to_shipped_fused": {"mean": auc - ref_auc, "ci95": _ci(boot - ref_boot)},
        }
    return out


def run(
    bundle_root: str, model_path: str, overrides: dict, seeds: int = 3, l2_grid: tuple[float, ...] = L2_GRID
) -> dict:
    """Every probe of the module docstring on the model's own training and validation features."""
    model, train, val, recipe = collect(bundle_root, model_path, overrides)
    y_train, y_val = train["diagnosis"].numpy(), val["diagnosis"].numpy()
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "shipped_visual": (_malignant(train["visual_logits"]), _malignant(val["visual_logits"])),
        "shipped_fused": (_fused(model, train), _fused(model, val)),
    }
    for seed in range(seeds):
        refit = copy.deepcopy(model)
        fit_fusion(refit, train, seed=seed, **recipe)
        rows[f"refit_fusion_seed{seed}"] = (_fused(refit, train), _fused(refit, val))
    standardizer = copy.deepcopy(model.standardizer).fit(train["radiomics"])
    with torch.no_grad():
        radiomics = tuple(standardizer(x["radiomics"]).numpy() for x in (train, val))
    visual = (train["visual_emb"].numpy(), val["visual_emb"].numpy())
    both = tuple(np.hstack(pair) for pair in zip(visual, radiomics, strict=True))
    features = {"visual": visual, "radiomics": radiomics, "visual+radiomics": both}
    for name, (x_train, x_val) in features.items():
        for l2 in l2_grid:
            rows[f"logistic_{name}_l2_{l2:g}"] = logistic_probe(x_train, y_train, x_val, l2)
    summary = {
        "model_path": str(model_path),
        "n_train": len(y_train),
        "n_validation": len(y_val),
        "fusion_recipe": recipe,
        "rows": score(rows, y_train, y_val),
    }
    return summary


def probe_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every probe takes: the bundle, the BUS-BRA folder and split, the model, the output, threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle_root", default="bundles/radvlsm_breast_us")
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split_file", required=True)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser


def probe_overrides(args: argparse.Namespace, run_name: str, output_dir: str | None = None) -> dict:
    """``train.json`` overrides for a probe: the dataset, its split and a run folder beside ``--out``."""
    return {
        "dataset_dir": args.dataset_dir,
        "split_file": args.split_file,
        "output_dir": output_dir or str(Path(args.out).parent / run_name),
    }


def finish(summary: dict, out: str | Path) -> None:
    """Log each row's validation AUC and write ``summary`` as JSON to ``out``."""
    for name, row in summary["rows"].items():
        logger.info("%-40s validation AUC %.4f (train %.4f)", name, row["validation_auc"]["mean"], row["train_auc"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    logger.info("written %s", out)


def main() -> None:
    parser = probe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--embedding_cache_dir", default=None, help="the training run's embeddings (reused)")
    parser.add_argument("--output_dir", default=None, help="train.json output_dir (default: beside --out)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    start(args)
    overrides = probe_overrides(args, "diagnosis_probe_run", args.output_dir)
    if args.embedding_cache_dir:
        overrides["embedding_cache_dir"] = args.embedding_cache_dir
    finish(run(args.bundle_root, args.model_path, overrides, seeds=args.seeds), args.out)


if __name__ == "__main__":
    main()
