"""Building the model: the variant registry, and ``network_def`` as the one place that sizes it."""

from __future__ import annotations

import inspect
import json

import pytest

from radvlsm.config import DEFAULT_BUNDLE, build_network
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.build import VARIANTS, build_radvlsm


def test_unknown_variant_and_missing_checkpoint(tiny_model) -> None:
    with pytest.raises(RadVLSMInputError, match="variant"):
        tiny_model(variant="huge")
    with pytest.raises(RadVLSMInputError, match="not found"):
        tiny_model(sam_checkpoint="/nonexistent/sam.pth")
    assert set(VARIANTS) == {"litemedsam", "tiny"}


def test_every_size_comes_from_network_def() -> None:
    """``build_radvlsm`` has no defaults, and ``network_def`` gives every argument and nothing else."""
    params = inspect.signature(build_radvlsm).parameters
    assert all(p.default is inspect.Parameter.empty for p in params.values())
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    network_def = json.loads((DEFAULT_BUNDLE / "configs" / "inference.json").read_text())["network_def"]
    assert network_def["_target_"] == "radvlsm.models.build.build_radvlsm"
    assert set(network_def) - {"_target_"} == set(params)


@pytest.mark.parametrize("config", ["train.json", "evaluate.json"])
def test_train_and_evaluate_build_the_network_of_inference_json(config: str) -> None:
    """The architecture is written once: the other configs point their ``network_def`` at ``inference.json``."""
    network_def = json.loads((DEFAULT_BUNDLE / "configs" / config).read_text())["network_def"]
    assert network_def == {"_target_": "radvlsm.config.build_network", "bundle_root": "@bundle_root"}


def test_overrides_change_one_key(tiny_model) -> None:
    model = tiny_model(radiomics=False, n_candidates=3, region_prompt=False)
    assert model.candidate_generator.k == 3 and model.radiomics is None and model.region_prompt is None
    assert model.image_size == 64 and model.prompt_learner is not None  # the bundle's n_ctx


def test_prompts_come_from_the_bundle_lexicon(tiny_model) -> None:
    from radvlsm.data.clinical_text import ClinicalLexicon

    lexicon = ClinicalLexicon.from_yaml(DEFAULT_BUNDLE / "configs" / "clinical_lexicon.yaml")
    model = tiny_model(radiomics=False)
    assert model.lesion_prompt == lexicon.lesion_prompt and model.class_prompts == list(lexicon.class_prompts)


def test_a_missing_bundle_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(RadVLSMInputError, match="bundle"):
        build_network(tmp_path)
