"""Baseline: a MONAI ``BasicUNet`` trained on the same patient split, for a fixed wall-clock budget.

Three steps, so that training can run on another machine (for example a GPU server) from a compact pack of
model-frame images, while evaluation reads the real images at their original size, exactly as the
bundle's evaluation does::

    # 1. model-frame (256x256) uint8 images and masks of the training and validation split, one .npz
    python benchmarks/unet_baseline.py pack --dataset_dir ../shared/data/bus-bra \
        --split_file SPLIT.json --out frames.npz
    # 2. train for a wall-clock budget (any device), keep the best validation Dice
    python benchmarks/unet_baseline.py train --frames frames.npz --minutes 5 --out unet.pt
    # 3. evaluate on the test split at each image's original size (Dice, IoU, HD95)
    python benchmarks/unet_baseline.py evaluate --dataset_dir ../shared/data/bus-bra \
        --split_file SPLIT.json --weights unet.pt --out unet_metrics.json   # + unet_metrics.csv, per image

The pack never leaves the machine it is made on unless you carry it; it holds data derived from the
dataset and must not be committed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceFocalLoss
from monai.networks.nets import BasicUNet
from monai.transforms import Compose, RandAffined, RandFlipd, RandGaussianNoised, RandScaleIntensityd

logger = logging.getLogger("benchmarks.unet_baseline")

UNET_FEATURES = (32, 32, 64, 128, 256, 32)


def build_unet() -> BasicUNet:
    """The baseline network: 2D ``BasicUNet``, 1 input channel, 1 output logit channel."""
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=UNET_FEATURES)


def _splits(dataset_dir: str, split_file: str) -> dict[str, list[dict]]:
    from radvlsm.engine.bundle import prepare_dataset, prepare_splits

    report = prepare_dataset(dataset_dir, validate=False)
    return prepare_splits(report, "test", split_file, None)


def pack(dataset_dir: str, split_file: str, out: str) -> None:
    """Write the training and validation images and masks in the model frame to one compressed ``.npz``."""
    from radvlsm.data.transforms import get_transforms

    splits = _splits(dataset_dir, split_file)
    transform = get_transforms("eval", image_size=256)
    arrays: dict[str, np.ndarray] = {}
    for name in ("training", "validation"):
        images, masks = [], []
        for i, item in enumerate(splits[name]):
            data = transform(dict(item))
            images.append((np.asarray(data["image"][0]) * 255).round().astype(np.uint8))
            masks.append(np.asarray(data["label"][0]) > 0.5)
            if (i + 1) % 200 == 0:
                logger.info("packed %d/%d %s images", i + 1, len(splits[name]), name)
        arrays[f"{name}_images"] = np.stack(images)
        arrays[f"{name}_masks"] = np.packbits(np.stack(masks), axis=-1)
    np.savez_compressed(out, **arrays)
    logger.info("wrote %s (%.1f MB)", out, Path(out).stat().st_size / 1e6)


def _tensors(frames: np.lib.npyio.NpzFile, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(frames[f"{name}_images"]).float().div(255).unsqueeze(1)
    masks = torch.from_numpy(np.unpackbits(frames[f"{name}_masks"], axis=-1)[..., : images.shape[-1]]).float()
    return images, masks.unsqueeze(1)


def _dice(logits: torch.Tensor, masks: torch.Tensor) -> float:
    pred = (logits > 0).float()
    inter = (pred * masks).sum((1, 2, 3))
    denom = pred.sum((1, 2, 3)) + masks.sum((1, 2, 3))
    return float(torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.ones_like(denom)).mean())


def train(frames_path: str, minutes: float, out: str, batch_size: int = 16, lr: float = 1e-3, seed: int = 0) -> dict:
    """Train the UNet (Dice + focal loss, flips, affine, noise) until ``minutes`` pass; keep the best val Dice.

    Returns:
        the training record (epochs, best validation Dice, seconds, device).
    """
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    frames = np.load(frames_path)
    x_train, y_train = _tensors(frames, "training")
    x_val, y_val = _tensors(frames, "validation")
    augment = Compose(
        [
            RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
            RandAffined(
                ["image", "label"],
                prob=0.5,
                rotate_range=0.2,
                scale_range=0.15,
                translate_range=(16, 16),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandScaleIntensityd("image", factors=0.2, prob=0.5),
            RandGaussianNoised("image", prob=0.3, std=0.03),
        ]
    )
    augment.set_random_state(seed)
    net = build_unet().to(device)
    loss_fn = DiceFocalLoss(sigmoid=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget, started = minutes * 60, time.perf_counter()
    best, epoch, record = -1.0, 0, {}
    while time.perf_counter() - started < budget:
        epoch += 1
        net.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), batch_size):
            if time.perf_counter() - started >= budget:
                break  # a slow device (2 CPU cores) may not finish an epoch inside the budget's last minutes
            idx = order[start : start + batch_size]
            pairs = [augment({"image": x_train[i], "label": y_train[i]}) for i in idx.tolist()]
            images = torch.stack([torch.as_tensor(p["image"]) for p in pairs]).to(device)
            labels = torch.stack([torch.as_tensor(p["label"]) for p in pairs]).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(images), labels)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            logits = torch.cat([net(x_val[s : s + 32].to(device)).cpu() for s in range(0, len(x_val), 32)])
        dice = _dice(logits, y_val)
        elapsed = time.perf_counter() - started
        logger.info("epoch %d: loss %.4f, val Dice %.4f, %.0f s", epoch, float(loss.detach()), dice, elapsed)
        if dice > best:
            best = dice
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, out)
            record = {"best_val_dice": dice, "best_epoch": epoch}
    record.update({"epochs": epoch, "seconds": time.perf_counter() - started, "device": str(device)})
    if device.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(0)
    Path(out).with_suffix(".json").write_text(json.dumps(record, indent=2))
    logger.info("best validation Dice %.4f at epoch %d; weights in %s", best, record.get("best_epoch", 0), out)
    return record


def _means(rows: list[dict]) -> dict:
    """Mean Dice, IoU and HD95 over per-image rows, and their number."""
    return {k: float(np.nanmean([r[k] for r in rows])) for k in ("dice", "iou", "hd95")} | {"n_images": len(rows)}


@torch.no_grad()
def evaluate(dataset_dir: str, split_file: str, weights: str, out: str) -> dict:
    """Dice, IoU and HD95 on the test split at each image's original size (as the bundle's evaluation), overall and
    by scanner; per image in a CSV beside ``out``."""
    from radvlsm.data.image_io import read_image_2d
    from radvlsm.data.transforms import ToModelFrame
    from radvlsm.engine.metrics import segmentation_metrics
    from radvlsm.models.weights import read_state_dict

    net = build_unet()
    net.load_state_dict(read_state_dict(weights))
    prepare = ToModelFrame(256)
    net.eval()
    rows = []
    for i, item in enumerate(_splits(dataset_dir, split_file)["test"]):
        image = read_image_2d(item["image"])
        truth = read_image_2d(item["label"]) > 0
        geometry = prepare.geometry(image)
        x = prepare(image)[None]
        prob = torch.sigmoid(net(x))[0, 0]
        mask = geometry.model_to_original(prob).numpy() > 0.5
        seg = segmentation_metrics(mask, truth)
        rows.append(
            {"id": item.get("id", ""), "device": item.get("device", "")} | {k: float(v[0]) for k, v in seg.items()}
        )
        if (i + 1) % 50 == 0:
            logger.info("evaluated %d images, mean Dice %.3f", i + 1, np.mean([r["dice"] for r in rows]))
    summary = _means(rows)
    summary["by_scanner"] = {
        device: _means(sel)
        for device in sorted({str(r["device"]) for r in rows})
        for sel in [[r for r in rows if str(r["device"]) == device]]
    }
    Path(out).write_text(json.dumps(summary, indent=2))
    with Path(out).with_suffix(".csv").open("w", newline="") as f:  # per image, as the bundle's per_image.csv
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
    logger.info("UNet baseline on the test split: %s", summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="model-frame training/validation arrays to one .npz")
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--split_file", required=True)
    p.add_argument("--out", required=True)
    t = sub.add_parser("train", help="train for a wall-clock budget")
    t.add_argument("--frames", required=True)
    t.add_argument("--minutes", type=float, default=5.0)
    t.add_argument("--out", required=True)
    t.add_argument("--batch_size", type=int, default=16)
    e = sub.add_parser("evaluate", help="test-split metrics at the original image size")
    e.add_argument("--dataset_dir", required=True)
    e.add_argument("--split_file", required=True)
    e.add_argument("--weights", required=True)
    e.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "pack":
        pack(args.dataset_dir, args.split_file, args.out)
    elif args.command == "train":
        train(args.frames, args.minutes, args.out, batch_size=args.batch_size)
    else:
        evaluate(args.dataset_dir, args.split_file, args.weights, args.out)


if __name__ == "__main__":
    main()
