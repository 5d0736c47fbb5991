"""Reader for the BUSI layout (Al-Dhabyani et al., 2020).

::

    root/
      benign/    benign (1).png, benign (1)_mask.png, benign (1)_mask_1.png, ...
      malignant/ malignant (1).png, malignant (1)_mask.png, ...
      normal/    normal (1).png, normal (1)_mask.png      (optional folder; empty masks)

An image can have several lesion masks (``X_mask.png``, ``X_mask_1.png``, ...): they are merged with a
logical OR into one 0/255 PNG written to ``merged_mask_dir/<pathology>/X_mask.png``; images of ``normal/``
get an all-zero mask there too. Nothing is ever written into the dataset folder.

BUSI has no patient IDs: each item's ``case`` is its image stem, so a patient-grouped split is not
possible and splits are by image.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from radvlsm.data.clinical_text import ClinicalLexicon
from radvlsm.data.image_io import list_images
from radvlsm.data.records import DIAGNOSIS, DatasetReport, collect_items
from radvlsm.data.validation import finish_item, image_shape, read_mask
from radvlsm.errors import DataValidationError, RadVLSMInputError

logger = logging.getLogger(__name__)

BUSI_FOLDERS = ("benign", "malignant", "normal")
_MASK_RE = re.compile(r"^(?P<stem>.+)_mask(_\d+)?$")


def _group_files(folder: Path) -> dict[str, tuple[Path | None, list[Path]]]:
    """``stem -> (image path or None, sorted mask paths)`` of one class folder."""
    groups: dict[str, tuple[Path | None, list[Path]]] = {}
    for path in list_images(folder):
        match = _MASK_RE.match(path.stem)
        stem = match.group("stem") if match else path.stem
        image, masks = groups.get(stem, (None, []))
        if match:
            masks.append(path)
        else:
            image = path
        groups[stem] = (image, masks)
    return groups


def merge_masks(masks: list[Path], shape: tuple[int, int], target: Path) -> Path:
    """OR-merge mask files into one 0/255 ``(H, W)`` PNG (all zeros when ``masks`` is empty).

    Args:
        masks: mask files of one image.
        shape: ``(H, W)`` of the image.
        target: PNG to write.

    Raises:
        DataValidationError: a mask of another size than the image, or an undecodable mask.
    """
    merged = np.zeros(shape, dtype=bool)
    for mask_path in masks:
        mask_hw = image_shape(mask_path, "mask")
        if mask_hw != shape:
            raise DataValidationError(
                f"mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but the image is {shape[0]}x{shape[1]}", str(mask_path)
            )
        merged |= read_mask(mask_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(merged.astype(np.uint8) * 255).save(target)
    return target


def _check_out_dir(root: Path, merged_mask_dir: str | Path | None) -> Path:
    if merged_mask_dir is None:
        out = Path(tempfile.mkdtemp(prefix="radvlsm_busi_masks_"))
        logger.info("BUSI merged masks go to the temporary folder %s", out)
        return out
    out = Path(merged_mask_dir).expanduser().resolve()
    if out == root or root in out.parents:
        raise RadVLSMInputError(
            f"must be outside the dataset folder {root} (the dataset is never written to)", str(out)
        )
    return out


def read_busi(
    root: str | Path,
    merged_mask_dir: str | Path | None = None,
    validate: bool = True,
    strict: bool = False,
    include_normal: bool = True,
    lexicon: ClinicalLexicon | None = None,
) -> DatasetReport:
    """Read a BUSI-layout folder, merging multi-lesion masks.

    Args:
        root: folder holding ``benign/`` and ``malignant/`` (and optionally ``normal/``).
        merged_mask_dir: where merged masks are written (default: a new temporary folder); must be
            outside ``root``.
        validate: check every image and merged mask (:func:`validate_item` with pixel checks).
        strict: raise on the first bad image instead of skipping it.
        include_normal: also read ``normal/`` (pathology ``normal``, diagnosis 0, empty mask).
        lexicon: clinical lexicon for the item ``text`` (default: the repository's YAML).

    Returns:
        the report (``layout="busi"``); ``case`` is the image stem, ``birads``/``histology``/``device`` None.

    Raises:
        DataValidationError: ``benign/`` or ``malignant/`` missing; any bad image when ``strict``.
        RadVLSMInputError: ``merged_mask_dir`` inside the dataset.
    """
    root = Path(root).expanduser().resolve()
    for needed in ("benign", "malignant"):
        if not (root / needed).is_dir():
            raise DataValidationError(f"BUSI layout needs a {needed}/ folder", str(root))
    out = _check_out_dir(root, merged_mask_dir)
    lexicon = lexicon or ClinicalLexicon.from_yaml()
    folders = [f for f in BUSI_FOLDERS if (root / f).is_dir() and (include_normal or f != "normal")]
    candidates = []
    for pathology in folders:
        for stem, (image, masks) in _group_files(root / pathology).items():
            candidates.append((f"{pathology}/{stem}", (pathology, stem, image, masks)))

    def build(payload: tuple[str, str, Path | None, list[Path]]) -> dict:
        pathology, stem, image, masks = payload
        if image is None:
            raise DataValidationError(f"mask(s) without an image: {[m.name for m in masks]}", str(root / pathology))
        if not masks and pathology != "normal":
            raise DataValidationError(f"no {stem}_mask.png for this {pathology} image", str(image))
        label = merge_masks(masks, image_shape(image, "image"), out / pathology / f"{stem}_mask.png")
        item = {
            "image": str(image),
            "label": str(label),
            "id": stem,
            "case": stem,
            "pathology": pathology,
            "diagnosis": DIAGNOSIS[pathology],
            "birads": None,
            "histology": None,
            "device": None,
        }
        item["text"] = lexicon.describe(item)
        return finish_item(item, validate)

    report = DatasetReport(layout="busi", root=str(root))
    collect_items(candidates, build, report, strict)
    logger.info("read %d BUSI items from %s (%d skipped)", len(report.items), root, len(report.skipped))
    return report
