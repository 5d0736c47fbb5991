"""Leave-one-scanner-out (LOSO) split files for BUS-BRA: the proxy for sites and scanners never seen in training.

For each scanner (the ``Device`` column, its model name without the frequency), a split file whose training and
validation images are the development split's images from the *other* scanners and whose test images are every
image of the held-out scanner (from all three splits: none of them is trained on). Train and evaluate with the
bundle's own commands on each file (``--split_file loso/<scanner>.json``), radvlsm and the U-Net alike.

Usage::

    python benchmarks/loso.py splits --dataset_dir ../shared/data/bus-bra \
        --split_file bundles/radvlsm_breast_us/configs/busbra_split.json --out_dir loso
    # after evaluating on loso/<scanner>.json (and the in-distribution model on the development test split):
    python benchmarks/loso.py compare --split_file bundles/radvlsm_breast_us/configs/busbra_split.json \
        --held_out LOSO_EVAL/per_image.csv --in_distribution TEST_EVAL/per_image.csv --out compare.json

``compare`` reads per-image CSVs (the bundle evaluation's ``per_image.csv`` or ``unet_baseline.py evaluate``'s
CSV) and reports the held-out scanner's means over all its images and, on the images of the development test
split that both files hold, the held-out and in-distribution means side by side with a paired 95% bootstrap
interval of their difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from pathlib import Path

import numpy as np

from radvlsm.engine.bundle import prepare_dataset

logger = logging.getLogger("benchmarks.loso")


def scanner_name(device: str) -> str:
    """``GE Logiq 7 @10-14MHz`` -> ``ge_logiq_7`` (the model, without the probe frequency)."""
    model = device.split("@")[0].strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", model).strip("_") or "unknown"


def loso_splits(dataset_dir: str, split_file: str) -> dict[str, dict]:
    """``{scanner: split dict}`` (image IDs) for every scanner of the dataset."""
    devices = {item["id"]: scanner_name(str(item.get("device") or "")) for item in prepare_dataset(dataset_dir).items}
    base = json.loads(Path(split_file).read_text())
    out = {}
    for scanner in sorted(set(devices.values())):
        split = {k: v for k, v in base.items() if not isinstance(v, list)}
        split["held_out_scanner"] = scanner
        for part in ("training", "validation"):
            split[part] = [i for i in base[part] if devices.get(i) != scanner]
        split["test"] = [
            i for part in ("training", "validation", "test") for i in base[part] if devices.get(i) == scanner
        ]
        out[scanner] = split
        logger.info("%s: %s", scanner, {k: len(v) for k, v in split.items() if isinstance(v, list)})
    return out


METRICS = ("dice", "iou", "hd95", "dice_box", "dice_click")


def read_per_image(path: str) -> dict[str, dict]:
    """``{id: row}`` of a per-image CSV; the metric columns as floats."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "id" not in rows[0]:
        raise ValueError(f"{path}: not a per-image CSV with an 'id' column")
    return {r["id"]: {k: (float(v) if k in METRICS and v != "" else v) for k, v in r.items()} for r in rows}


def _paired(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Means of paired per-image values ``a`` (held out) and ``b`` (in distribution), their mean difference and
    its 95% percentile bootstrap interval over images; NaN when there are no images."""
    if not len(a):
        nan = float("nan")
        return {"held_out": nan, "in_distribution": nan, "difference": nan, "difference_ci95": [nan, nan]}
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    diff = np.nanmean(a[idx] - b[idx], axis=1)
    return {
        "held_out": float(np.nanmean(a)),
        "in_distribution": float(np.nanmean(b)),
        "difference": float(np.nanmean(a - b)),
        "difference_ci95": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
    }


def compare(split_file: str, held_out: str, in_distribution: str | None = None) -> dict:
    """Held-out (LOSO) means over all the file's images and, on the development test split's images that
    ``in_distribution`` also holds, both means and the paired difference (held-out minus in-distribution)."""
    loso = read_per_image(held_out)
    test_ids = set(json.loads(Path(split_file).read_text())["test"])
    columns = [m for m in METRICS if m in next(iter(loso.values()))]
    summary: dict = {
        "held_out": str(held_out),
        "scanners": sorted({str(r.get("device", "")) for r in loso.values()}),
        "all_held_out": {"n_images": len(loso)}
        | {m: float(np.nanmean([r[m] for r in loso.values()])) for m in columns},
    }
    if in_distribution:
        ref = read_per_image(in_distribution)
        ids = sorted(i for i in loso if i in test_ids and i in ref)
        shared = [m for m in columns if m in next(iter(ref.values()))]
        same: dict = {"n_images": len(ids)}
        for m in shared:
            same[m] = _paired(np.array([loso[i][m] for i in ids], float), np.array([ref[i][m] for i in ids], float))
        summary["in_distribution"] = str(in_distribution)
        summary["same_test_images"] = same
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("splits", help="write one split file per held-out scanner")
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--split_file", required=True)
    p.add_argument("--out_dir", required=True)
    c = sub.add_parser("compare", help="held-out against in-distribution on the same test images")
    c.add_argument("--split_file", required=True, help="the development split (its 'test' IDs)")
    c.add_argument("--held_out", required=True, help="per-image CSV of the LOSO model on loso/<scanner>.json")
    c.add_argument("--in_distribution", default=None, help="per-image CSV of the in-distribution model")
    c.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "compare":
        summary = compare(args.split_file, args.held_out, args.in_distribution)
        Path(args.out).write_text(json.dumps(summary, indent=2))
        logger.info("written %s: %s", args.out, json.dumps(summary))
        return
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for scanner, split in loso_splits(args.dataset_dir, args.split_file).items():
        (out / f"{scanner}.json").write_text(json.dumps(split, indent=1))


if __name__ == "__main__":
    main()
