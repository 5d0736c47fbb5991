"""The app's served network (``lib.bundle_model``) and settings (``lib.options``) come from the bundle's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from label_server import APP_DIR, TINY_CONF
from lib.bundle_model import BundleModel
from lib.options import AppOptions, parse_value
from lib.trainers.radvlsm import RadVLSMTrainTask, train_defaults

from radvlsm.config import DEFAULT_BUNDLE, build_network
from radvlsm.errors import RadVLSMInputError


def test_the_served_network_is_the_bundle_network_with_the_conf_overrides(tmp_path: Path) -> None:
    conf = {**TINY_CONF, "network_def#n_candidates": "3", "model_dir": str(tmp_path)}
    served = BundleModel(AppOptions.from_conf(APP_DIR, conf)).get("cpu")
    reference = build_network(variant="tiny", text_encoder="tiny", embed_dim=32, n_candidates=3)
    own = {k: tuple(v.shape) for k, v in served.model.state_dict().items()}
    assert own == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert served.model.candidate_generator.k == 3 and not served.model.training
    inference = json.loads((DEFAULT_BUNDLE / "configs" / "inference.json").read_text())
    assert served.embedding_cache.max_items == inference["embedding_cache_size"]


def test_the_embedding_cache_is_keyed_by_the_encoder_weights(tmp_path: Path) -> None:
    options = AppOptions.from_conf(APP_DIR, {**TINY_CONF, "model_dir": str(tmp_path)})
    first = BundleModel(options).get("cpu")
    again = BundleModel(options).get("cpu")
    assert first.embedding_cache.namespace == again.embedding_cache.namespace
    with torch.no_grad():
        next(again.model.image_encoder.parameters()).add_(1.0)
    tuned = type(again.embedding_cache).for_encoder(again.model.image_encoder, max_items=2)
    assert tuned.namespace != first.embedding_cache.namespace


def test_status_names_the_weights_and_says_whether_they_are_trained(tmp_path: Path) -> None:
    model = BundleModel(AppOptions.from_conf(APP_DIR, {**TINY_CONF, "model_dir": str(tmp_path)}))
    model.get("cpu")
    status = model.status("cpu")
    assert status["weights"] == str(tmp_path / "model.pt") and status["trained"] is False
    assert status["variant"] == "tiny" and "no trained weights" in status["warning"]


def test_trainer_defaults_are_the_bundle_train_json(tmp_path: Path) -> None:
    train = json.loads((DEFAULT_BUNDLE / "configs" / "train.json").read_text())
    defaults = train_defaults(DEFAULT_BUNDLE)
    assert defaults["max_epochs"] == train["epochs_segment"]
    assert (defaults["epochs_align"], defaults["epochs_fusion"]) == (train["epochs_align"], train["epochs_fusion"])
    options = AppOptions.from_conf(APP_DIR, {**TINY_CONF, "model_dir": str(tmp_path / "m"), "work_dir": str(tmp_path)})
    config = RadVLSMTrainTask(options, {}).config()
    assert {k: config[k] for k in defaults} == defaults


@pytest.mark.parametrize(
    ("conf", "match"),
    [
        ({"dicomweb_search_filter": "[1, 2]"}, "JSON object"),
        ({"bundle": "/nonexistent/bundle"}, "not a bundle folder"),
    ],
)
def test_bad_settings_are_named(conf: dict, match: str) -> None:
    with pytest.raises(RadVLSMInputError, match=match):
        AppOptions.from_conf(APP_DIR, conf)


def test_conf_values_are_json_when_they_can_be(tmp_path: Path) -> None:
    assert (parse_value("32"), parse_value("true"), parse_value("[0.3, 0.5]")) == (32, True, [0.3, 0.5])
    assert parse_value("tiny") == "tiny"
    options = AppOptions.from_conf(APP_DIR, {"device": "auto", "preload": "yes", "model_dir": str(tmp_path)})
    assert options.device is None and options.preload is True and options.model_dir == tmp_path.resolve()
