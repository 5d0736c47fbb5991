"""The result of reading a dataset: usable items (MONAI datalist dicts) and the skipped ones with reasons.

Item dict keys (every reader fills all of them):

- ``image``, ``label``: absolute paths (str) of the image and its binary lesion mask;
- ``id`` (str), ``case`` (str, the patient: splits group by it);
- ``pathology``: ``"benign"``, ``"malignant"`` or ``"normal"``; ``diagnosis``: 0 benign/normal, 1 malignant;
- ``birads`` (int or None), ``histology`` (str or None), ``device`` (str or None);
- ``bbox``: ``[x, y, w, h]`` of the mask in 0-based original pixels, None when the mask is empty;
- ``text``: a clinical description built by :class:`radvlsm.data.clinical_text.ClinicalLexicon`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from radvlsm.errors import DataValidationError

logger = logging.getLogger(__name__)

PATHOLOGIES = ("benign", "malignant", "normal")
DIAGNOSIS = {"benign": 0, "malignant": 1, "normal": 0}


@dataclass
class DatasetReport:
    """Items read from a dataset plus what was skipped and why.

    Args:
        items: usable items (MONAI datalist dicts, keys listed in the module docstring).
        skipped: ``(image ID or file, reason)`` for every row or file that was not used.
        layout: ``"bus-bra"``, ``"busi"`` or ``"datalist"``.
        root: the dataset folder or datalist JSON the items came from.
    """

    items: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    layout: str = ""
    root: str = ""

    def class_counts(self) -> dict[str, int]:
        """Number of usable images per pathology (``benign``, ``malignant``, ``normal`` when present)."""
        return dict(sorted(Counter(item["pathology"] for item in self.items).items()))

    def summary(self) -> str:
        """One human-readable paragraph: counts per class and patients, then each skipped item with its reason."""
        n_cases = len({item["case"] for item in self.items})
        counts = ", ".join(f"{k} {v}" for k, v in self.class_counts().items()) or "none"
        text = f"{self.layout} dataset at {self.root}: {len(self.items)} images ({counts}) from {n_cases} cases"
        if not self.skipped:
            return text + "; nothing skipped"
        lines = [f"{text}; {len(self.skipped)} skipped:"]
        lines += [f"  - {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def collect_items(
    candidates: list[tuple[str, object]],
    build: Callable[[Any], dict],
    report: DatasetReport,
    strict: bool,
) -> DatasetReport:
    """Build items one by one; bad ones go to ``report.skipped`` (or raise when ``strict``).

    Args:
        candidates: ``(name, payload)`` pairs; ``name`` is reported for skipped ones.
        build: ``payload -> item dict``, raising :class:`DataValidationError` for a bad one.
        report: report to fill.
        strict: raise on the first bad item instead of skipping it.
    """
    seen: set[str] = set()
    for name, payload in candidates:
        try:
            item = build(payload)
            if item["id"] in seen:
                raise DataValidationError("duplicate image ID", item["id"])
        except DataValidationError as err:
            if strict:
                raise
            report.skipped.append((name, str(err)))
            continue
        seen.add(item["id"])
        report.items.append(item)
    if report.skipped:
        logger.warning(
            "%s: skipped %d of %d items (see DatasetReport.skipped / summary())",
            report.root,
            len(report.skipped),
            len(candidates),
        )
    return report
