"""The exported image encoder (radvlsm.models.encoders.runtime): parity with eager torch, file cache, fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import radvlsm.models.encoders.runtime as rt
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.image_encoder import build_image_encoder
from radvlsm.models.encoders.runtime import EncoderRuntime, build_encoder_runtime, export_encoder_onnx, onnx_path
from radvlsm.predictor import RadVLSMPredictor

EXPORTED = [r for r in rt.available_runtimes() if r != "torch"]  # in auto's order of preference


@pytest.fixture()
def encoder():
    return build_image_encoder("tiny")


@pytest.mark.parametrize("runtime", EXPORTED)
def test_exported_encoder_matches_eager(encoder, runtime, tmp_path) -> None:
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    run = EncoderRuntime(encoder, runtime, cache_dir=tmp_path)
    out = run(images)  # a batch of two, image by image through the batch-of-one graph
    assert run.backend == runtime and out.shape == (2, 32, 16, 16) and out.dtype == torch.float32
    with torch.no_grad():
        ref = encoder(images)
    assert float((out - ref).abs().max()) < 1e-3
    torch.testing.assert_close(run(images[:1]), ref[:1], atol=1e-3, rtol=0)


def test_file_is_named_by_the_weights_and_rebuilt_when_they_change(encoder, tmp_path) -> None:
    if not EXPORTED:
        pytest.skip("neither onnxruntime nor openvino is installed")
    run = EncoderRuntime(encoder, EXPORTED[0], cache_dir=tmp_path)
    images = torch.rand(1, 1, 64, 64)
    run(images)
    first = onnx_path(encoder, tmp_path)
    assert first.is_file() and [p.name for p in tmp_path.iterdir()] == [first.name]
    assert export_encoder_onnx(encoder, tmp_path) == first  # an existing file is reused
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    encoder.load_state_dict(state)  # new weights, same tensors updated in place
    out = run(images)
    second = onnx_path(encoder, tmp_path)
    assert second != first and second.is_file()
    with torch.no_grad():
        torch.testing.assert_close(out, encoder(images), atol=1e-3, rtol=0)


def test_auto_falls_back_to_torch_with_one_log_line(encoder, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(rt, "available_runtimes", lambda: ["torch"])
    run = EncoderRuntime(encoder, "auto", cache_dir=tmp_path)
    images = torch.rand(1, 1, 64, 64)
    with caplog.at_level(logging.INFO, logger=rt.__name__):
        out = run(images)
        run(images)
    assert run.backend == "torch" and not list(tmp_path.iterdir())
    assert len([r for r in caplog.records if r.name == rt.__name__]) == 1
    with torch.no_grad():
        torch.testing.assert_close(out, encoder(images))


def test_auto_prefers_the_first_available_exported_runtime(encoder, tmp_path) -> None:
    if not EXPORTED:
        pytest.skip("neither onnxruntime nor openvino is installed")
    run = EncoderRuntime(encoder, "auto", cache_dir=tmp_path)
    run(torch.rand(1, 1, 64, 64))
    assert run.backend == EXPORTED[0]


@pytest.mark.parametrize("runtime", EXPORTED)
def test_runtime_uses_the_threads_given(encoder, runtime, tmp_path) -> None:
    run = EncoderRuntime(encoder, runtime, cache_dir=tmp_path, threads=1)
    run.prepare()
    if runtime == "onnxruntime":
        assert run._session.session.get_session_options().intra_op_num_threads == 1
    else:
        assert int(run._session.model.get_property("INFERENCE_NUM_THREADS")) == 1


def test_bad_settings_are_clear_errors(encoder) -> None:
    with pytest.raises(RadVLSMInputError, match="encoder_runtime"):
        EncoderRuntime(encoder, "tensorrt")
    with pytest.raises(RadVLSMInputError, match="encoder_precision"):
        EncoderRuntime(encoder, "onnxruntime", precision="bf16")
    with pytest.raises(RadVLSMInputError, match="expected"):
        EncoderRuntime(encoder, "torch")(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("runtime", EXPORTED)
def test_automatic_mask_and_probability_match_on_phantom_images(runtime, phantom_dir, tmp_path, tiny_model) -> None:
    from PIL import Image

    torch.manual_seed(0)
    model = tiny_model(radiomics=True).eval()
    eager = RadVLSMPredictor(model)
    exported = RadVLSMPredictor(model, None, build_encoder_runtime(model.image_encoder, runtime, tmp_path))
    for path in sorted((phantom_dir / "Images").glob("*.png"))[:6]:
        image = np.asarray(Image.open(path))
        eager.set_image(image)
        exported.set_image(image)
        ref, out = eager.predict(), exported.predict()
        assert exported.encoder_runtime.backend == runtime
        assert float((exported.features - eager.features).abs().max()) < 1e-3, path.name
        assert np.abs(out.probability - ref.probability).max() < 1e-3, path.name
        assert (out.mask != ref.mask).mean() < 1e-3, path.name
        assert abs(out.malignancy_probability - ref.malignancy_probability) < 1e-3, path.name


def test_bundle_predictor_takes_the_runtime_from_inference_json(tmp_path) -> None:
    from radvlsm.config import bundle_parser

    parser = bundle_parser(
        overrides={
            "network_def#variant": "tiny",
            "network_def#text_encoder": "tiny",
            "network_def#embed_dim": 32,
            "network": "$@network_def.eval()",
            "encoder_export_dir": str(tmp_path),
        }
    )
    assert parser["encoder_runtime"] == "auto"
    predictor = parser.get_parsed_content("predictor")
    assert isinstance(predictor.encoder_runtime, EncoderRuntime) and predictor.encoder_runtime.requested == "auto"
    predictor.set_image(np.random.default_rng(0).random((50, 70)))
    assert predictor.encoder_runtime.backend == (EXPORTED[0] if EXPORTED else "torch")


@pytest.mark.slow
def test_litemedsam_encoder_exports_within_1e_3(phantom_dir, tmp_path) -> None:
    """The one smoke test on the real weights: the exported TinyViT's embedding of a phantom image."""
    from PIL import Image

    from radvlsm.data.transforms import ToModelFrame

    if not EXPORTED:
        pytest.skip("neither onnxruntime nor openvino is installed")
    encoder = build_image_encoder("litemedsam")
    gray = np.asarray(Image.open(sorted((phantom_dir / "Images").glob("*.png"))[0]).convert("L"))
    x = ToModelFrame(256)(gray)[None]
    with torch.no_grad():
        ref = encoder(x)
    for runtime in EXPORTED:
        out = EncoderRuntime(encoder, runtime, cache_dir=tmp_path)(x)
        assert float((out - ref).abs().max()) < 1e-3, runtime
