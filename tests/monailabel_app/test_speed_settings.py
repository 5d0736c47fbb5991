"""The app's speed settings (issue 15): threads, the shared embedding folder, warm-up, the runtime, background tasks."""

from __future__ import annotations

from pathlib import Path

from label_server import APP_DIR, TINY_CONF
from lib.bundle_model import BundleModel
from lib.options import AppOptions

from radvlsm.models.encoders.runtime import EncoderRuntime


def test_defaults_warm_up_and_share_embeddings_on_disk(tmp_path: Path) -> None:
    options = AppOptions.from_conf(APP_DIR, {"work_dir": str(tmp_path)})
    assert options.preload and options.torch_threads is None
    assert options.embedding_cache_dir == (tmp_path / "embeddings").resolve()
    options = AppOptions.from_conf(APP_DIR, {"torch_threads": "1", "embedding_cache_dir": "none", "preload": "false"})
    assert options.torch_threads == 1 and options.embedding_cache_dir is None and not options.preload


def test_served_predictor_has_the_bundle_runtime_and_the_shared_cache(tmp_path: Path) -> None:
    conf = {**TINY_CONF, "model_dir": str(tmp_path / "models"), "work_dir": str(tmp_path / "work")}
    predictor = BundleModel(AppOptions.from_conf(APP_DIR, conf)).get("cpu")
    assert isinstance(predictor.encoder_runtime, EncoderRuntime) and predictor.encoder_runtime.requested == "auto"
    assert predictor.embedding_cache.cache_dir == tmp_path / "work" / "embeddings"


def test_this_process_is_not_a_background_task() -> None:
    from main import background_task

    assert not background_task()
