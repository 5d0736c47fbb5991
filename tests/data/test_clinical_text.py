from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radvlsm.data.clinical_text import ClinicalLexicon, default_lexicon_path
from radvlsm.errors import RadVLSMInputError


@pytest.fixture(scope="module")
def lexicon() -> ClinicalLexicon:
    return ClinicalLexicon.from_yaml()


def test_default_yaml_prompts(lexicon: ClinicalLexicon) -> None:
    assert lexicon.lesion_prompt == "a breast ultrasound image showing a lesion"
    assert len(lexicon.class_prompts) == 2
    assert "benign" in lexicon.class_prompts[0] and "malignant" in lexicon.class_prompts[1]


def test_descriptors_cover_birads_lexicon(lexicon: ClinicalLexicon) -> None:
    names = lexicon.descriptor_prompts()
    expected = {
        "shape": ["oval", "round", "irregular"],
        "margin": ["circumscribed", "indistinct", "angular", "microlobulated", "spiculated"],
        "orientation": ["parallel", "not_parallel"],
        "echo_pattern": ["anechoic", "hyperechoic", "complex_cystic_and_solid", "hypoechoic", "isoechoic"],
        "posterior_features": ["none", "enhancement", "shadowing", "combined"],
    }
    for category, descriptors in expected.items():
        for descriptor in descriptors:
            prompts = names[f"{category}.{descriptor}"]
            assert prompts and all(isinstance(p, str) and p for p in prompts)


def test_phrases_follow_pathology_and_birads(lexicon: ClinicalLexicon) -> None:
    benign = " ".join(lexicon.phrases_for("benign"))
    malignant = " ".join(lexicon.phrases_for("malignant"))
    assert "oval" in benign and "circumscribed" in benign and "enhancement" in benign
    assert "irregular" in malignant and "spiculated" in malignant and "shadowing" in malignant
    birads5 = lexicon.phrases_for("benign", 5)
    assert birads5[0].startswith("BI-RADS 5") and any("spiculated" in p for p in birads5)
    assert lexicon.phrases_for("normal") == [lexicon.normal_text]
    with pytest.raises(RadVLSMInputError, match="pathology"):
        lexicon.phrases_for("cancerous")


def test_describe_is_one_sentence(lexicon: ClinicalLexicon) -> None:
    text = lexicon.describe({"pathology": "malignant", "birads": 4, "histology": "invasive ductal carcinoma"})
    assert text.startswith("a breast ultrasound image of a malignant breast lesion (invasive ductal carcinoma)")
    assert "BI-RADS 4" in text and text.endswith(".") and text.count(".") == 1
    plain = lexicon.describe({"pathology": "benign", "birads": None, "histology": None})
    assert "BI-RADS" not in plain and "()" not in plain
    assert "no focal lesion" in lexicon.describe({"pathology": "normal"})


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(RadVLSMInputError, match="not found"):
        ClinicalLexicon.from_yaml(tmp_path / "missing.yaml")
    raw = yaml.safe_load(default_lexicon_path().read_text())
    del raw["lesion_prompt"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(RadVLSMInputError, match="lesion_prompt"):
        ClinicalLexicon.from_yaml(tmp_path / "a.yaml")
    raw = yaml.safe_load(default_lexicon_path().read_text())
    raw["pathology"]["benign"].append("shape.star")
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(RadVLSMInputError, match=r"b\.yaml.*shape\.star"):
        ClinicalLexicon.from_yaml(tmp_path / "b.yaml")


def test_override_path(tmp_path: Path) -> None:
    raw = yaml.safe_load(default_lexicon_path().read_text())
    raw["lesion_prompt"] = "an ultrasound lesion"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert ClinicalLexicon.from_yaml(str(tmp_path / "c.yaml")).lesion_prompt == "an ultrasound lesion"
