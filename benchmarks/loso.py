"""Leave-one-scanner-out (LOSO) split files for BUS-BRA: the proxy for sites and scanners never seen in training.

For each scanner (the ``Device`` column, its model name without the frequency), a split file whose training and
validation images are the development split's images from the *other* scanners and whose test images are every
image of the held-out scanner (from all three splits: none of them is trained on). Train and evaluate with the
bundle's own commands on each file (``--split_file loso/<scanner>.json``), radvlsm and the U-Net alike.

Usage::

    python benchmarks/loso.py --dataset_dir ../shared/data/bus-bra \
        --split_file bundles/radvlsm_breast_us/configs/busbra_split.json --out_dir loso
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--split_file", required=True)
    p.add_argument("--out_dir", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for scanner, split in loso_splits(args.dataset_dir, args.split_file).items():
        (out / f"{scanner}.json").write_text(json.dumps(split, indent=1))


if __name__ == "__main__":
    main()
