"""MONAI Decathlon-style datalist JSON (read and write) and layout auto-detection.

A datalist JSON looks like ``{"training": [{"image": "img/a.png", "label": "mask/a.png", "pathology":
"benign", "case": "p1"}, ...], "test": [...]}``; relative paths are resolved against ``base_dir`` (default:
the JSON's folder) by :func:`monai.data.load_decathlon_datalist`. Per item, ``pathology`` (or ``diagnosis``
0/1) is required; ``label``, ``id`` (default: image file stem), ``case`` (default: ``id``), ``birads``,
``histology``, ``device`` and ``text`` are optional.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from radvlsm.data.busbra import CSV_NAME, parse_birads, read_busbra
from radvlsm.data.busi import read_busi
from radvlsm.data.clinical_text import ClinicalLexicon
from radvlsm.data.image_io import image_stem
from radvlsm.data.records import DIAGNOSIS, DatasetReport, collect_items
from radvlsm.data.validation import finish_item, validate_item
from radvlsm.errors import DataValidationError, RadVLSMInputError

logger = logging.getLogger(__name__)

_STORED_KEYS = ("image", "label", "id", "case", "pathology", "diagnosis", "birads", "histology", "device", "text")


def _normalise(raw: Mapping[str, Any], lexicon: ClinicalLexicon, validate: bool) -> dict:
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise DataValidationError("datalist entry has no 'image' path", str(raw))
    image_id = str(raw.get("id") or image_stem(image))
    pathology = raw.get("pathology")
    if pathology is None and raw.get("diagnosis") is not None:
        if raw["diagnosis"] not in (0, 1):
            raise DataValidationError(f"diagnosis {raw['diagnosis']!r} is not 0 or 1", image_id)
        pathology = ("benign", "malignant")[int(raw["diagnosis"])]
    pathology = str(pathology).strip().lower() if pathology is not None else None
    if pathology not in DIAGNOSIS:
        raise DataValidationError(
            f"needs pathology benign/malignant/normal or diagnosis 0/1, got {pathology!r}", image_id
        )
    item = {
        **raw,
        "image": str(Path(image).resolve()),
        "id": image_id,
        "case": str(raw.get("case") or image_id),
        "pathology": pathology,
        "diagnosis": DIAGNOSIS[pathology],
        "birads": parse_birads(raw.get("birads"), image_id),
        "histology": raw.get("histology") or None,
        "device": raw.get("device") or None,
    }
    item["text"] = raw.get("text") or lexicon.describe(item)
    if raw.get("label"):
        item["label"] = str(Path(raw["label"]).resolve())
        return finish_item(item, validate)
    item.pop("label", None)
    if validate:
        validate_item(item, check_pixels=True)
    item["bbox"] = None
    return item


def read_datalist_json(
    path: str | Path,
    data_list_key: str = "training",
    base_dir: str | Path | None = None,
    validate: bool = True,
    strict: bool = False,
    lexicon: ClinicalLexicon | None = None,
) -> DatasetReport:
    """Read one list of a Decathlon-style datalist JSON into a report.

    Args:
        path: the JSON file.
        data_list_key: which list (``"training"``, ``"validation"``, ``"test"``, ...).
        base_dir: folder relative paths are resolved against (default: the JSON's folder).
        validate: check every image and mask.
        strict: raise on the first bad entry instead of skipping it.
        lexicon: clinical lexicon for items without ``text``.

    Raises:
        DataValidationError: unreadable JSON or missing key; any bad entry when ``strict``.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataValidationError("datalist JSON not found", str(path))
    try:
        raw_items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=data_list_key, base_dir=base_dir)
    except json.JSONDecodeError as err:
        raise DataValidationError(f"not valid JSON ({err})", str(path)) from err
    except ValueError as err:
        raise DataValidationError(f"no list {data_list_key!r} in the datalist ({err})", str(path)) from err
    lexicon = lexicon or ClinicalLexicon.from_yaml()
    report = DatasetReport(layout="datalist", root=str(path))
    candidates = [(str(raw.get("id") or raw.get("image") or f"entry {i}"), raw) for i, raw in enumerate(raw_items)]
    collect_items(candidates, lambda raw: _normalise(raw, lexicon, validate), report, strict)
    logger.info("read %d items from %s[%s] (%d skipped)", len(report.items), path, data_list_key, len(report.skipped))
    return report


def write_datalist_json(path: str | Path, splits: Mapping[str, list[dict]], base_dir: str | Path | None = None) -> Path:
    """Write items as a Decathlon-style datalist JSON, paths relative to ``base_dir`` where possible.

    Args:
        path: the JSON to write.
        splits: list name (e.g. ``"training"``) -> items.
        base_dir: folder paths are made relative to (default: the JSON's folder); paths outside it stay absolute.

    Returns:
        the written path.
    """
    path = Path(path).expanduser().resolve()
    base = Path(base_dir).resolve() if base_dir is not None else path.parent

    def rel(p: str) -> str:
        p_abs = Path(p).resolve()
        return os.path.relpath(p_abs, base) if base == p_abs.parent or base in p_abs.parents else str(p_abs)

    data = {
        name: [
            {k: (rel(v) if k in ("image", "label") else v) for k, v in item.items() if k in _STORED_KEYS}
            for item in items
        ]
        for name, items in splits.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def load_dataset(path: str | Path, **kwargs: Any) -> DatasetReport:
    """Read a dataset, detecting its layout.

    ``*.json`` -> :func:`read_datalist_json`; a folder with ``bus_data.csv`` -> :func:`read_busbra`; a folder
    with ``benign/`` and ``malignant/`` -> :func:`read_busi`.

    Args:
        path: dataset folder or datalist JSON.
        **kwargs: passed to the reader (e.g. ``validate``, ``strict``, ``merged_mask_dir``, ``data_list_key``).

    Raises:
        RadVLSMInputError: the path does not exist or matches no layout (the message lists the layouts).
    """
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".json":
        return read_datalist_json(path, **kwargs)
    if path.is_dir():
        if (path / CSV_NAME).is_file():
            return read_busbra(path, **kwargs)
        if (path / "benign").is_dir() and (path / "malignant").is_dir():
            return read_busi(path, **kwargs)
    if not path.exists():
        raise RadVLSMInputError("dataset path does not exist", str(path))
    raise RadVLSMInputError(
        f"no known dataset layout; looked for BUS-BRA ({CSV_NAME} with Images/ and Masks/), "
        "BUSI (benign/ and malignant/ folders) or a datalist *.json file",
        str(path),
    )
