"""Training items from the datastore: each final label with its pathology and clinical text.

MONAI Label's stock bundle trainer keeps only ``image`` and ``label``; Rad-VLSM also learns from each
label's pathology (benign/malignant/normal, or diagnosis 0/1) and clinical text. Annotators send them
as the label's info when saving it (``PUT /datastore/label`` with ``params={"pathology": ..., "text":
...}``); the image's info is the fallback. Labels without a pathology are left out (logged).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from radvlsm.data.datalist import write_datalist_json
from radvlsm.data.splits import split_by_case
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

CARRIED_KEYS = ("pathology", "diagnosis", "text", "birads", "histology", "device", "case")
PATHOLOGY_OF_DIAGNOSIS = {0: "benign", 1: "malignant", "0": "benign", "1": "malignant"}
VALIDATION_SUFFIX = "#val"
MIN_TRAINING_IMAGES = 2


def _carried(label_info: dict[str, Any], image_info: dict[str, Any]) -> dict[str, Any]:
    """The training metadata of one label: the label's info first, then the image's."""
    out = {}
    for key in CARRIED_KEYS:
        value = label_info.get(key, image_info.get(key))
        if value not in (None, ""):
            out[key] = value
    if "pathology" not in out and out.get("diagnosis") in PATHOLOGY_OF_DIAGNOSIS:
        out["pathology"] = PATHOLOGY_OF_DIAGNOSIS[out["diagnosis"]]
    if "pathology" in out:
        out["pathology"] = str(out["pathology"]).strip().lower()
    return out


def labeled_items(datastore: Datastore, tag: str = DefaultLabelTag.FINAL) -> list[dict[str, Any]]:
    """Datalist items (``image``, ``label``, ``id`` plus the carried metadata) of every labeled image.

    Args:
        datastore: the app's datastore.
        tag: the label tag trained on.
    """
    items = []
    for image_id in sorted(datastore.get_labeled_images(tag)):
        label_id = datastore.get_labels_by_image_id(image_id).get(tag, image_id)
        meta = _carried(datastore.get_label_info(label_id, tag) or {}, datastore.get_image_info(image_id) or {})
        if "pathology" not in meta:
            logger.warning("label of %s has no pathology (or diagnosis) in its info: left out of training", image_id)
            continue
        item = {
            "image": datastore.get_image_uri(image_id),
            "label": datastore.get_label_uri(label_id, tag),
            "id": image_id,
            **meta,
        }
        item.setdefault("case", image_id)
        items.append(item)
    logger.info("%d labeled images with pathology for training", len(items))
    return items


def split_items(items: list[dict[str, Any]], val_split: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Training and validation items, grouped by patient (``case``) and stratified by pathology.

    The image-text alignment stage needs at least two training images, so with fewer held-out-able
    labels (or ``val_split`` <= 0) every item trains and validation runs on copies of the training items
    (IDs suffixed ``#val``) so the bundle's best-checkpoint selection still works.

    Raises:
        RadVLSMInputError: fewer than two items.
    """
    if len(items) < MIN_TRAINING_IMAGES:
        raise RadVLSMInputError(
            f"{len(items)} labeled image(s) with a pathology; training needs at least {MIN_TRAINING_IMAGES}", "train"
        )
    train, val = list(items), []
    if 0 < val_split < 1 and len({i["case"] for i in items}) > 2:
        splits = split_by_case(items, fractions=(1 - val_split, val_split, 0.0), seed=seed)
        if len(splits["training"]) >= MIN_TRAINING_IMAGES:
            train, val = splits["training"], splits["validation"]
    if not val:
        logger.warning("no held-out labels: validating on the %d training images", len(train))
        val = [{**i, "id": i["id"] + VALIDATION_SUFFIX, "case": str(i["case"]) + VALIDATION_SUFFIX} for i in train]
    return train, val


def write_training_files(train: list[dict], val: list[dict], run_dir: Path) -> tuple[Path, Path]:
    """Write the run's datalist JSON (all items) and split JSON (image IDs) for the bundle.

    Returns:
        ``(datalist.json, split.json)`` paths.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    datalist = write_datalist_json(run_dir / "datalist.json", {"training": train + val})
    split = run_dir / "split.json"
    split.write_text(
        json.dumps({"training": [i["id"] for i in train], "validation": [i["id"] for i in val], "test": []}, indent=1)
    )
    return datalist, split
