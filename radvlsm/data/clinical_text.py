"""BI-RADS ultrasound lexicon as text prompts (the bundle's ``configs/clinical_lexicon.yaml``).

BUS-BRA and BUSI carry no per-image lexicon descriptors, so an item's description uses the descriptors
*typical* of its BI-RADS category (when known, the radiologist's reading of the image) or else of its
pathology; the YAML holds every phrase, so wording changes need no code change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from radvlsm.data.records import PATHOLOGIES
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)


def default_lexicon_path() -> Path:
    """The bundle's ``configs/clinical_lexicon.yaml`` (the model gets its path from ``network_def#lexicon_path``;
    dataset readers use this one to describe lesions when no lexicon is passed)."""
    return Path(__file__).resolve().parents[2] / "bundles" / "radvlsm_breast_us" / "configs" / "clinical_lexicon.yaml"


def _require(mapping: Mapping, key: str, source: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise RadVLSMInputError(f"missing key {key!r} in the clinical lexicon", source)
    return mapping[key]


@dataclass(frozen=True)
class ClinicalLexicon:
    """Lesion, class and descriptor prompts plus item descriptions.

    Args:
        lesion_prompt: fixed class-agnostic prompt.
        class_prompts: one prompt per diagnosis (index 0 benign, 1 malignant).
        normal_text: description of an image without a lesion.
        descriptors: category -> descriptor -> prompts (first prompt used in descriptions).
        pathology_descriptors: pathology -> ``"category.descriptor"`` names typical of it.
        birads: BI-RADS category -> ``{"assessment": str, "descriptors": [names]}``.
    """

    lesion_prompt: str
    class_prompts: list[str]
    normal_text: str
    descriptors: dict[str, dict[str, list[str]]]
    pathology_descriptors: dict[str, list[str]]
    birads: dict[int, dict[str, Any]]

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> ClinicalLexicon:
        """Load the lexicon (default :func:`default_lexicon_path`).

        Raises:
            RadVLSMInputError: the file is missing, not YAML, lacks a key or names an unknown descriptor.
        """
        path = Path(path) if path is not None else default_lexicon_path()
        src = str(path)
        if not path.is_file():
            raise RadVLSMInputError("clinical lexicon file not found", src)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise RadVLSMInputError(f"not valid YAML ({err})", src) from err
        class_prompts = [str(p) for p in _require(raw, "class_prompts", src)]
        if len(class_prompts) != 2:
            raise RadVLSMInputError(f"class_prompts needs 2 entries (benign, malignant), got {len(class_prompts)}", src)
        descriptors = {
            str(cat): {str(name): [str(p) for p in prompts] for name, prompts in entries.items()}
            for cat, entries in _require(raw, "descriptors", src).items()
        }
        birads = {
            int(k): {
                "assessment": str(_require(v, "assessment", src)),
                "descriptors": list(_require(v, "descriptors", src)),
            }
            for k, v in _require(raw, "birads", src).items()
        }
        lexicon = cls(
            lesion_prompt=str(_require(raw, "lesion_prompt", src)),
            class_prompts=class_prompts,
            normal_text=str(_require(raw, "normal_text", src)),
            descriptors=descriptors,
            pathology_descriptors={str(k): list(v) for k, v in _require(raw, "pathology", src).items()},
            birads=birads,
        )
        lexicon._check_names(src)
        return lexicon

    def _check_names(self, source: str) -> None:
        known = self.descriptor_prompts()
        lists = [*self.pathology_descriptors.values(), *(v["descriptors"] for v in self.birads.values())]
        for names in lists:
            for name in names:
                if name not in known:
                    raise RadVLSMInputError(f"unknown descriptor {name!r} (known: {sorted(known)})", source)
        for pathology in ("benign", "malignant"):
            _require(self.pathology_descriptors, pathology, source)

    def descriptor_prompts(self) -> dict[str, list[str]]:
        """``"category.descriptor"`` (e.g. ``"margin.spiculated"``) -> its prompts, for zero-shot findings."""
        return {f"{cat}.{name}": list(p) for cat, entries in self.descriptors.items() for name, p in entries.items()}

    def phrases_for(self, pathology: str, birads: int | None = None) -> list[str]:
        """Typical lexicon phrases for a pathology and BI-RADS category.

        Args:
            pathology: ``"benign"``, ``"malignant"`` or ``"normal"``.
            birads: BI-RADS category or None; categories 2..5 of the YAML choose their own descriptors,
                others only add ``"BI-RADS n"``.

        Returns:
            The assessment phrase (when ``birads`` is given) followed by one phrase per descriptor;
            ``[normal_text]`` for ``"normal"``.
        """
        if pathology not in PATHOLOGIES:
            raise RadVLSMInputError(f"unknown pathology {pathology!r}; expected one of {PATHOLOGIES}", "pathology")
        if pathology == "normal":
            return [self.normal_text]
        prompts = self.descriptor_prompts()
        if birads is not None and int(birads) in self.birads:
            entry = self.birads[int(birads)]
            return [entry["assessment"]] + [prompts[n][0] for n in entry["descriptors"]]
        head = [f"BI-RADS {int(birads)}"] if birads is not None else []
        return head + [prompts[n][0] for n in self.pathology_descriptors[pathology]]

    def describe(self, item: Mapping[str, Any]) -> str:
        """One sentence describing an item (its ``text``).

        Args:
            item: dict with ``pathology`` and optional ``birads``, ``histology``.

        Returns:
            e.g. ``"a breast ultrasound image of a benign breast lesion (fibroadenoma), BI-RADS 2, benign:
            an oval mass, a circumscribed margin, ..., posterior acoustic enhancement."``
        """
        pathology = item.get("pathology")
        if pathology == "normal":
            return self.normal_text + "."
        phrases = self.phrases_for(str(pathology), item.get("birads"))
        has_assessment = item.get("birads") is not None
        assessment = f", {phrases[0]}" if has_assessment else ""
        findings = phrases[1:] if has_assessment else phrases
        histology = f" ({item['histology']})" if item.get("histology") else ""
        listed = ", ".join(findings[:-1]) + f" and {findings[-1]}" if len(findings) > 1 else "".join(findings)
        return f"a breast ultrasound image of a {pathology} breast lesion{histology}{assessment}: {listed}."
