"""Reader for the BUS-BRA layout (the real dataset and the synthetic phantom).

::

    root/
      bus_data.csv         ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX
      Images/bus_0001-l.png
      Masks/mask_0001-l.png   (ID with ``bus_`` replaced by ``mask_``)

The item ``bbox`` is recomputed from the mask (0-based ``[x, y, w, h]``, ``w = x_max - x_min + 1``): the
real CSV's ``BBOX`` is 1-based and one pixel smaller, and its ``Width``/``Height`` disagree with the files
for a few images, so neither is trusted.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from radvlsm.data.clinical_text import ClinicalLexicon
from radvlsm.data.records import DIAGNOSIS, DatasetReport, collect_items
from radvlsm.data.validation import finish_item
from radvlsm.errors import DataValidationError

logger = logging.getLogger(__name__)

CSV_NAME = "bus_data.csv"
REQUIRED_COLUMNS = ("ID", "Case", "Pathology")
OPTIONAL_COLUMNS = ("Histology", "BIRADS", "Device")


def parse_birads(value: object, source: str) -> int | None:
    """BI-RADS category from a CSV cell (``"4"``, ``"4a"``, ``4.0``; empty -> None).

    Raises:
        DataValidationError: a value that is not a category 0..6.
    """
    text = str(value).strip().lower() if value is not None else ""
    if text in ("", "nan", "none"):
        return None
    match = re.fullmatch(r"([0-6])(\.0|[abc])?", text)
    if not match:
        raise DataValidationError(f"BIRADS {value!r} is not a BI-RADS category 0..6", source)
    return int(match.group(1))


def _optional(row: Mapping[str, str], column: str) -> str | None:
    value = (row.get(column) or "").strip()
    return value or None


def read_csv_rows(csv_path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> list[dict[str, str]]:
    """Rows of a CSV as dicts, after checking its header.

    Raises:
        DataValidationError: the CSV is missing, has no header, or lacks a required column.
    """
    if not csv_path.is_file():
        raise DataValidationError("dataset CSV not found", str(csv_path))
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DataValidationError(f"missing column(s) {missing} (found {columns})", str(csv_path))
        return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]


def _row_to_item(row: Mapping[str, str], root: Path, lexicon: ClinicalLexicon, csv_path: Path) -> dict:
    image_id = row["ID"].strip()
    if not image_id:
        raise DataValidationError("row with an empty ID", str(csv_path))
    pathology = row["Pathology"].strip().lower()
    if pathology not in DIAGNOSIS:
        raise DataValidationError(f"pathology {row['Pathology']!r} is not benign, malignant or normal", image_id)
    case = row["Case"].strip()
    if not case:
        raise DataValidationError("empty Case (patient) value", image_id)
    item = {
        "image": str(root / "Images" / f"{image_id}.png"),
        "label": str(root / "Masks" / f"{image_id.replace('bus_', 'mask_', 1)}.png"),
        "id": image_id,
        "case": case,
        "pathology": pathology,
        "diagnosis": DIAGNOSIS[pathology],
        "birads": parse_birads(row.get("BIRADS"), image_id),
        "histology": _optional(row, "Histology"),
        "device": _optional(row, "Device"),
    }
    item["text"] = lexicon.describe(item)
    return item


def read_busbra(
    root: str | Path,
    validate: bool = True,
    strict: bool = False,
    lexicon: ClinicalLexicon | None = None,
) -> DatasetReport:
    """Read a BUS-BRA-layout folder.

    Args:
        root: folder holding ``bus_data.csv``, ``Images/`` and ``Masks/``.
        validate: check every image and mask (:func:`validate_item` with pixel checks).
        strict: raise on the first bad row or item instead of skipping it.
        lexicon: clinical lexicon for the item ``text`` (default: the repository's YAML).

    Returns:
        the report (``layout="bus-bra"``); skipped rows carry their reason.

    Raises:
        DataValidationError: missing CSV or column; any bad item when ``strict``.
    """
    root = Path(root).expanduser().resolve()
    csv_path = root / CSV_NAME
    rows = read_csv_rows(csv_path)
    lexicon = lexicon or ClinicalLexicon.from_yaml()
    report = DatasetReport(layout="bus-bra", root=str(root))
    candidates = [(row["ID"].strip() or f"{csv_path} row {i + 2}", row) for i, row in enumerate(rows)]
    collect_items(
        candidates, lambda row: finish_item(_row_to_item(row, root, lexicon, csv_path), validate), report, strict
    )
    logger.info("read %d BUS-BRA items from %s (%d skipped)", len(report.items), root, len(report.skipped))
    return report
