"""Inference runtimes for the frozen image encoder: eager torch, ONNX Runtime or OpenVINO.

The TinyViT encoder is exported once to ONNX (TorchScript exporter, opset 17, batch of one: the vendored
TinyViT takes ``len(x)`` as a Python number, so the traced graph has a static batch) into a cache
folder, under a name holding a hash of its weights and input size, so changed weights get a new file and
an old file is never used for new weights. Nothing is committed: the file is built at first use (or ahead
of time with :func:`export_encoder_onnx`). :class:`EncoderRuntime` runs it:

* ``"torch"``: the eager module itself (training, GPUs, and the reference);
* ``"onnxruntime"``: ONNX Runtime's CPU execution provider;
* ``"openvino"``: OpenVINO's CPU plugin, float32 inference precision unless ``precision="bf16"`` (OpenVINO's
  own default on CPUs with bfloat16 units, about 2x faster, but not within 1e-3 of eager: opt-in only);
* ``"auto"``: torch when the images are on a GPU; else the first available of OpenVINO and ONNX Runtime
  (the faster two on the 2-core benchmark machine, see ``docs/benchmarks.md``), else torch, with one log line.

Both runtimes use ``threads`` intra-op threads, by default ``torch.get_num_threads()`` (which follows
``OMP_NUM_THREADS`` and ``torch.set_num_threads``), so a process never uses more cores than it was given.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from radvlsm.atomic_files import atomic_write
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16")
OPSET = 17
CACHE_ENV = "RADVLSM_CACHE_DIR"
_AUTO_ORDER = ("openvino", "onnxruntime")


def default_cache_dir() -> Path:
    """Folder of exported encoders: ``$RADVLSM_CACHE_DIR/encoders``, else ``$XDG_CACHE_HOME/radvlsm/encoders``
    (``~/.cache/radvlsm/encoders``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "encoders"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "radvlsm" / "encoders"


def encoder_digest(encoder: nn.Module) -> str:
    """16-hex-digit hash of an encoder's weights (parameters and buffers, with names and shapes) and input size."""
    digest = hashlib.sha1(f"{type(encoder).__name__}:{getattr(encoder, 'image_size', '')}".encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def onnx_path(encoder: nn.Module, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`export_encoder_onnx` puts ``encoder``'s ONNX file (the name holds the weights' hash)."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    size = int(getattr(encoder, "image_size", 0))
    return folder / f"image_encoder-{encoder_digest(encoder)}-s{size}-opset{OPSET}.onnx"


def export_encoder_onnx(encoder: nn.Module, cache_dir: str | Path | None = None) -> Path:
    """Export ``encoder`` (``(1, 1, S, S)`` -> ``(1, C, S/4, S/4)``) to ONNX unless its file already exists.

    The file is written atomically (another process sharing the folder sees the old state or the whole file).

    Args:
        encoder: the image encoder (:class:`radvlsm.models.encoders.image_encoder.ImageEncoder`), any device.
        cache_dir: folder (default :func:`default_cache_dir`).

    Returns:
        The ONNX file's path.
    """
    path = onnx_path(encoder, cache_dir)
    if path.is_file():
        return path
    import onnx  # noqa: F401  (torch.onnx.export writes through it; an ImportError makes "auto" fall back to torch)

    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(encoder.image_size)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on TinyViT's Python-side shape arithmetic
            torch.onnx.export(
                encoder,
                (torch.zeros(1, 1, size, size, device=device),),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["embeddings"],
            )
    finally:
        encoder.train(was_training)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    logger.info("image encoder exported to %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def available_runtimes() -> list[str]:
    """The installed runtimes among ``onnxruntime`` and ``openvino``, plus ``torch``."""
    found = []
    for name in _AUTO_ORDER:
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return [*found, "torch"]


class _OrtSession:
    """ONNX Runtime CPU session: ``(1, 1, S, S)`` float32 array -> ``(1, C, h, w)``."""

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import onnxruntime as ort

        if precision != "f32":
            raise RadVLSMInputError(f"ONNX Runtime runs the encoder in f32 only, got {precision!r}", "precision")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": images})[0]


class _OpenVINOSession:
    """OpenVINO CPU compiled model: ``(1, 1, S, S)`` float32 array -> ``(1, C, h, w)``."""

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": precision,
        }
        self.model = core.compile_model(str(path), "CPU", config)
        self.request = self.model.create_infer_request()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: images})[0], copy=True)


_SESSIONS = {"onnxruntime": _OrtSession, "openvino": _OpenVINOSession}


class EncoderRuntime:
    """Runs a frozen image encoder in the chosen runtime: ``__call__(images (B,1,S,S)) -> (B,C,S/4,S/4)``.

    It is not an ``nn.Module`` (the model's state dict keeps only the torch encoder's weights); it has the
    ``eval``/``train``/``training`` members :class:`radvlsm.embedding_cache.EmbeddingCache` calls. The
    session is built at first use and rebuilt when the encoder's weights change (new hash, new file).

    Args:
        encoder: the torch encoder (reference and fallback); must stay frozen for the exported runtimes.
        runtime: one of :data:`RUNTIMES`.
        cache_dir: folder of exported files (default :func:`default_cache_dir`).
        threads: intra-op threads of the runtime (default ``torch.get_num_threads()`` at session build).
        precision: ``"f32"`` (default; matches eager to about 1e-5) or ``"bf16"`` (OpenVINO only).
    """

    def __init__(
        self,
        encoder: nn.Module,
        runtime: str = "auto",
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        precision: str = "f32",
    ) -> None:
        if runtime not in RUNTIMES:
            raise RadVLSMInputError(f"must be one of {RUNTIMES}, got {runtime!r}", "encoder_runtime")
        if precision not in PRECISIONS:
            raise RadVLSMInputError(f"must be one of {PRECISIONS}, got {precision!r}", "encoder_precision")
        if precision != "f32" and runtime not in ("openvino", "auto"):
            raise RadVLSMInputError(f"{precision} needs the openvino runtime, not {runtime!r}", "encoder_precision")
        self.encoder = encoder
        self.requested = runtime
        self.cache_dir = cache_dir
        self.threads = threads
        self.precision = precision
        self.training = False
        self.backend: str | None = None  # the runtime in use, known after the first CPU call
        self._session: Any = None
        self._state_key: tuple | None = None
        self._digest: str | None = None

    @property
    def image_size(self) -> int:
        return int(self.encoder.image_size)

    def eval(self) -> EncoderRuntime:
        """No-op (the runtime is always in inference mode)."""
        return self

    def train(self, mode: bool = True) -> EncoderRuntime:
        """No-op: the exported encoder has no training mode (train the torch ``encoder`` instead)."""
        return self

    def _weights_key(self) -> tuple:
        """Cheap identity of the current weights: storage address and in-place version of every tensor."""
        return tuple((t.data_ptr(), t._version) for t in self.encoder.state_dict(keep_vars=True).values())

    def _candidates(self) -> list[str]:
        if self.requested == "auto":
            return [r for r in available_runtimes() if r != "torch"]
        return [self.requested]

    def prepare(self) -> str:
        """Build (or rebuild, after a weights change) the CPU session; return the runtime in use."""
        if self.requested == "torch":
            self.backend = "torch"
            return self.backend
        key = self._weights_key()
        if self._state_key == key and self.backend is not None:
            return self.backend
        digest = encoder_digest(self.encoder)
        self._state_key = key
        if digest == self._digest and self.backend is not None:
            return self.backend
        threads = self.threads or torch.get_num_threads()
        errors = []
        for name in self._candidates():
            try:
                path = export_encoder_onnx(self.encoder, self.cache_dir)
                self._session = _SESSIONS[name](path, threads, self.precision)
            except ImportError as exc:
                if self.requested != "auto":
                    raise RadVLSMInputError(
                        f"{name} is not installed ({exc}); install it or use 'torch'", "encoder_runtime"
                    ) from exc
                errors.append(f"{name}: not installed ({exc})")
                continue
            except RadVLSMInputError:
                raise
            except Exception as exc:  # an export or compile failure: auto falls back, an explicit choice fails
                if self.requested != "auto":
                    raise
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            self.backend, self._digest = name, digest
            logger.info("image encoder runtime: %s (%s, %d threads, %s)", name, self.precision, threads, path.name)
            return name
        logger.warning("image encoder runtime: torch (eager), no exported runtime usable (%s)", "; ".join(errors))
        self.backend, self._digest, self._session = "torch", digest, None
        return "torch"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            images: ``(B, 1, S, S)`` float in ``[0, 1]`` (any device; GPU images use torch under ``auto``).

        Returns:
            ``(B, C, S/4, S/4)`` float32 embeddings on ``images.device``.
        """
        s = self.image_size
        if images.ndim != 4 or images.shape[1] != 1 or tuple(images.shape[-2:]) != (s, s):
            raise RadVLSMInputError(f"expected (B, 1, {s}, {s}), got {tuple(images.shape)}", "images")
        if self.requested == "torch" or (self.requested == "auto" and images.device.type != "cpu"):
            with torch.no_grad():
                return self.encoder(images)
        if self.prepare() == "torch":
            with torch.no_grad():
                return self.encoder(images)
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        out = np.concatenate([self._session(array[i : i + 1]) for i in range(len(array))])  # static batch of one
        return torch.from_numpy(out).to(images.device)


def build_encoder_runtime(
    encoder: nn.Module,
    runtime: str = "torch",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    precision: str = "f32",
) -> EncoderRuntime | None:
    """An :class:`EncoderRuntime` (the bundle's ``image_encoder_runtime``), or ``None`` for plain eager torch.

    Args:
        encoder: the frozen image encoder.
        runtime: one of :data:`RUNTIMES`.
        cache_dir: folder of exported files; empty or None: :func:`default_cache_dir`.
        threads: runtime threads (None: ``torch.get_num_threads()``).
        precision: ``f32`` or ``bf16`` (OpenVINO).
    """
    cache_dir = cache_dir or None
    if runtime == "torch" and precision == "f32":
        return None
    return EncoderRuntime(encoder, runtime=runtime, cache_dir=cache_dir, threads=threads, precision=precision)
