"""Patient-grouped, pathology-stratified splits and their JSON files (image IDs only).

Every image of a ``case`` (patient) lands in the same split. A patient's label is ``malignant`` when any
of its images is malignant, else ``benign`` when any is benign, else ``normal``; within each label the
patients are shuffled with ``seed`` and cut by ``fractions`` (largest remainder), so each split gets the
same class mix and the same seed always gives the same split.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from radvlsm.data.records import DatasetReport
from radvlsm.errors import DataValidationError, RadVLSMInputError

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("training", "validation", "test")


def _quotas(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder integer counts summing to ``n``."""
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _case_label(pathologies: set[str]) -> str:
    for label in ("malignant", "benign"):
        if label in pathologies:
            return label
    return "normal"


def split_by_case(
    items: Sequence[dict], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, list[dict]]:
    """Split items by patient, stratified by patient-level pathology.

    Args:
        items: dataset items with ``case`` and ``pathology``.
        fractions: training, validation, test fractions of patients (non-negative, sum 1).
        seed: shuffling seed.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` keeping the items' order within each split.
        A split with a non-zero fraction gets at least one patient when there are enough patients.

    Raises:
        RadVLSMInputError: bad ``fractions``.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise RadVLSMInputError(f"need 3 non-negative fractions summing to 1, got {fractions}", "fractions")
    by_case: dict[str, set[str]] = defaultdict(set)
    for item in items:
        by_case[str(item["case"])].add(item["pathology"])
    strata: dict[str, list[str]] = defaultdict(list)
    for case in sorted(by_case):
        strata[_case_label(by_case[case])].append(case)
    rng = np.random.default_rng(seed)
    assigned: list[list[str]] = [[], [], []]
    for label in sorted(strata):
        cases = [strata[label][i] for i in rng.permutation(len(strata[label]))]
        start = 0
        for k, count in enumerate(_quotas(len(cases), fractions)):
            assigned[k].extend(cases[start : start + count])
            start += count
    for k, frac in enumerate(fractions):  # tiny datasets: give an empty split one patient from the largest
        if frac > 0 and not assigned[k]:
            donor = max(range(3), key=lambda j: len(assigned[j]))
            if len(assigned[donor]) > 1:
                assigned[k].append(assigned[donor].pop())
    where = {case: name for name, cases in zip(SPLIT_NAMES, assigned, strict=True) for case in cases}
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_NAMES}
    for item in items:
        splits[where[str(item["case"])]].append(item)
    logger.info(
        "split %d images of %d patients (seed %d): %s",
        len(items),
        len(by_case),
        seed,
        {name: len(v) for name, v in splits.items()},
    )
    return splits


def write_split(path: str | Path, splits: Mapping[str, Sequence[dict]], dataset_name: str, seed: int) -> Path:
    """Write a split as image IDs only (no paths, no pixels).

    Args:
        path: JSON to write.
        splits: split name -> items (with ``id``).
        dataset_name: e.g. ``"bus-bra"``.
        seed: the seed the split was made with.

    Returns:
        the written path; content ``{"dataset": ..., "seed": ..., "training": [ids], ...}``.
    """
    path = Path(path)
    data: dict = {"dataset": dataset_name, "seed": int(seed)}
    data.update({name: [str(item["id"]) for item in items] for name, items in splits.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def read_split(path: str | Path, report: DatasetReport) -> dict[str, list[dict]]:
    """Resolve a split JSON's IDs against a loaded dataset.

    Args:
        path: JSON written by :func:`write_split`.
        report: the loaded dataset.

    Returns:
        split name -> items, in the file's order.

    Raises:
        DataValidationError: unreadable file, no split lists, IDs not in the dataset (named), or a patient
            in two splits.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataValidationError(f"cannot read the split file ({err})", str(path)) from err
    names = [k for k, v in data.items() if isinstance(v, list)] if isinstance(data, dict) else []
    if not names:
        raise DataValidationError(f"no split lists (expected keys {SPLIT_NAMES})", str(path))
    by_id = {item["id"]: item for item in report.items}
    missing = [i for name in names for i in data[name] if i not in by_id]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataValidationError(
            f"{len(missing)} image ID(s) not in the dataset at {report.root} (or skipped there): {shown}", str(path)
        )
    splits = {name: [by_id[i] for i in data[name]] for name in names}
    owner: dict[str, str] = {}
    for name, items in splits.items():
        for item in items:
            if owner.setdefault(item["case"], name) != name:
                raise DataValidationError(
                    f"patient {item['case']!r} is in both {owner[item['case']]} and {name}", str(path)
                )
    return splits


def all_split(report: DatasetReport) -> dict[str, list[dict]]:
    """Every item as one split (``{"all": items}``), for external validation."""
    return {"all": list(report.items)}
