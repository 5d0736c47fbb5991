"""SAM prompt encoder + mask decoder (segment_anything's own classes) with LiteMedSAM weights.

:class:`PromptableMaskDecoder` decodes ``K`` prompts per image (boxes, points and/or mask logits, in
model-frame pixels) from a precomputed image embedding, all ``K`` in one mask-decoder call per image:
segment_anything's ``MaskDecoder.predict_masks`` repeats ONE image embedding per prompt, so a batch of
``B`` images is decoded image by image. It also returns the mask-token output of the two-way
transformer (a learned region embedding), captured with a forward hook for the duration of the call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.image_encoder import litemedsam_checkpoint_path, load_checkpoint_state, load_module_state

logger = logging.getLogger(__name__)

DECODER_PREFIXES = ("prompt_encoder.", "mask_decoder.")


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes of the prompt encoder and mask decoder.

    Args:
        embed_dim: channels ``C`` of the image embedding and of the prompt tokens.
        embedding_size: side ``h = w`` of the image embedding.
        image_size: side ``S`` of the model frame the prompt coordinates live in.
        mask_in_chans: hidden channels of the mask-prompt downscaler.
        transformer_depth: two-way transformer blocks.
        mlp_dim: transformer MLP width.
        num_heads: transformer attention heads.
        iou_head_hidden_dim: width of the IoU prediction head.
    """

    embed_dim: int = 256
    embedding_size: int = 64
    image_size: int = 256
    mask_in_chans: int = 16
    transformer_depth: int = 2
    mlp_dim: int = 2048
    num_heads: int = 8
    iou_head_hidden_dim: int = 256


def decoder_config(variant: str) -> DecoderConfig:
    """The configuration of a named variant: ``"litemedsam"`` or ``"tiny"`` (matches the tiny image encoder)."""
    if variant == "litemedsam":
        return DecoderConfig()
    if variant == "tiny":
        return DecoderConfig(
            embed_dim=32,
            embedding_size=16,
            image_size=64,
            mask_in_chans=4,
            transformer_depth=1,
            mlp_dim=64,
            num_heads=2,
            iou_head_hidden_dim=32,
        )
    raise RadVLSMInputError(f"unknown mask decoder variant {variant!r}; expected 'litemedsam' or 'tiny'", "variant")


@dataclass
class DecoderOutput:
    """What :meth:`PromptableMaskDecoder.forward` returns.

    Attributes:
        mask_logits: ``(B, K, 1, S, S)`` mask logits in the model frame (``S = 4 h``).
        iou_pred: ``(B, K)`` predicted IoU of each mask.
        mask_tokens: ``(B, K, C)`` the two-way transformer's output for the chosen mask token.
    """

    mask_logits: torch.Tensor
    iou_pred: torch.Tensor
    mask_tokens: torch.Tensor


class PromptableMaskDecoder(nn.Module):
    """segment_anything ``PromptEncoder`` + ``MaskDecoder`` decoding ``K`` prompts per image.

    State-dict keys are LiteMedSAM's ``prompt_encoder.*`` and ``mask_decoder.*``.

    Args:
        config: the sizes (see :func:`decoder_config`).

    Attributes:
        image_size: side ``S`` of the prompt frame (the prompt encoder's ``input_image_size``).
        embed_dim: image-embedding channels ``C``.
        embedding_size: image-embedding side ``h``.
        mask_size: side of the output masks (``4 h``; equals ``image_size`` for LiteMedSAM).
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        c, e, s = config.embed_dim, config.embedding_size, config.image_size
        self.prompt_encoder = PromptEncoder(
            embed_dim=c, image_embedding_size=(e, e), input_image_size=(s, s), mask_in_chans=config.mask_in_chans
        )
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.transformer_depth, embedding_dim=c, mlp_dim=config.mlp_dim, num_heads=config.num_heads
            ),
            transformer_dim=c,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        )
        self.image_size = s
        self.embed_dim = c
        self.embedding_size = e
        self.mask_size = 4 * e

    def forward(
        self,
        image_embeddings: torch.Tensor,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> DecoderOutput:
        """Decode ``K`` prompts for each of ``B`` images.

        Args:
            image_embeddings: ``(B, C, h, w)`` from the image encoder.
            boxes: ``(B, K, 4)`` boxes ``x1, y1, x2, y2`` in model-frame pixels, or ``None``.
            points: ``(B, K, P, 2)`` points ``x, y`` in model-frame pixels, or ``None``.
            point_labels: ``(B, K, P)``: 1 foreground, 0 background, -1 padding; given with ``points``.
            mask_inputs: ``(B, K, 1, 4h, 4w)`` mask-prompt logits, or ``None``.
            multimask_output: decode SAM's three candidate masks and keep, per prompt, the one with the
                highest predicted IoU (otherwise the single-mask output).

        Returns:
            :class:`DecoderOutput` with ``mask_logits (B, K, 1, 4h, 4w)``, ``iou_pred (B, K)`` and
            ``mask_tokens (B, K, C)``.
        """
        b, _ = self._check_prompts(image_embeddings, boxes, points, point_labels, mask_inputs)
        dtype = image_embeddings.dtype
        if boxes is not None:
            boxes = boxes.to(dtype)
        if points is not None:
            points = points.to(dtype)
        outputs = [
            self._decode_one(
                image_embeddings[i : i + 1],
                None if boxes is None else boxes[i],
                None if points is None else (points[i], point_labels[i]),
                None if mask_inputs is None else mask_inputs[i].to(dtype),
                multimask_output,
            )
            for i in range(b)
        ]
        masks, iou, tokens = (torch.stack(parts) for parts in zip(*outputs, strict=True))
        return DecoderOutput(mask_logits=masks, iou_pred=iou, mask_tokens=tokens)

    def _decode_one(
        self,
        embedding: torch.Tensor,
        boxes: torch.Tensor | None,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        masks: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One image, ``K`` prompts, one ``MaskDecoder`` call.

        Args:
            embedding: ``(1, C, h, w)``.
            boxes: ``(K, 4)`` or ``None``.
            points: ``((K, P, 2), (K, P))`` or ``None``.
            masks: ``(K, 1, 4h, 4w)`` or ``None``.
            multimask_output: see :meth:`forward`.

        Returns:
            ``(K, 1, 4h, 4w)`` mask logits, ``(K,)`` IoU predictions, ``(K, C)`` mask tokens.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
        captured: list[torch.Tensor] = []
        handle = self.mask_decoder.transformer.register_forward_hook(lambda _m, _i, out: captured.append(out[0]))
        try:
            masks_out, iou = self.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        finally:
            handle.remove()
        # hs: (K, 1 + num_mask_tokens + n_prompt_tokens, C); token 1 is the single-mask output, 2.. the multimask ones
        mask_tokens = captured[0][:, 1 : 1 + self.mask_decoder.num_mask_tokens]
        if not multimask_output:
            return masks_out, iou[:, 0], mask_tokens[:, 0]
        best = iou.argmax(dim=1)  # (K,)
        rows = torch.arange(best.shape[0], device=best.device)
        return masks_out[rows, best][:, None], iou[rows, best], mask_tokens[rows, best + 1]

    def _check_prompts(
        self,
        image_embeddings: torch.Tensor,
        boxes: torch.Tensor | None,
        points: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        mask_inputs: torch.Tensor | None,
    ) -> tuple[int, int]:
        """Validate shapes; return ``(B, K)``."""
        c, e = self.embed_dim, self.embedding_size
        if image_embeddings.ndim != 4 or tuple(image_embeddings.shape[1:]) != (c, e, e):
            raise RadVLSMInputError(
                f"expected (B, {c}, {e}, {e}), got {tuple(image_embeddings.shape)}", "image_embeddings"
            )
        b = image_embeddings.shape[0]
        if (points is None) != (point_labels is None):
            raise RadVLSMInputError("points and point_labels must be given together", "point_labels")
        ks: dict[str, int] = {}
        if boxes is not None:
            if boxes.ndim != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
                raise RadVLSMInputError(f"expected (B={b}, K, 4), got {tuple(boxes.shape)}", "boxes")
            ks["boxes"] = boxes.shape[1]
        if points is not None and point_labels is not None:
            if points.ndim != 4 or points.shape[0] != b or points.shape[3] != 2:
                raise RadVLSMInputError(f"expected (B={b}, K, P, 2), got {tuple(points.shape)}", "points")
            if tuple(point_labels.shape) != tuple(points.shape[:3]):
                raise RadVLSMInputError(
                    f"expected {tuple(points.shape[:3])} to match points, got {tuple(point_labels.shape)}",
                    "point_labels",
                )
            if not bool(((point_labels == -1) | (point_labels == 0) | (point_labels == 1)).all()):
                raise RadVLSMInputError("values must be 1 (foreground), 0 (background) or -1 (padding)", "point_labels")
            ks["points"] = points.shape[1]
        if mask_inputs is not None:
            m = 4 * e
            if mask_inputs.ndim != 5 or mask_inputs.shape[0] != b or tuple(mask_inputs.shape[2:]) != (1, m, m):
                raise RadVLSMInputError(
                    f"expected (B={b}, K, 1, {m}, {m}), got {tuple(mask_inputs.shape)}", "mask_inputs"
                )
            ks["mask_inputs"] = mask_inputs.shape[1]
        if not ks:
            raise RadVLSMInputError("give at least one prompt: boxes, points or mask_inputs", "prompts")
        if len(set(ks.values())) != 1:
            raise RadVLSMInputError(f"prompt counts K differ: {ks}", "prompts")
        k = next(iter(ks.values()))
        if k < 1:
            raise RadVLSMInputError("K must be at least 1", "prompts")
        return b, k

    @staticmethod
    def region_embedding(image_embeddings: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid-weighted average of the image embedding under each mask.

        Args:
            image_embeddings: ``(B, C, h, w)``.
            mask_logits: ``(B, K, 1, S, S)`` (area-downsampled to ``h x w``).

        Returns:
            ``(B, K, C)`` region embeddings (differentiable in both inputs).
        """
        b, _, h, w = image_embeddings.shape
        if mask_logits.ndim != 5 or mask_logits.shape[0] != b or mask_logits.shape[2] != 1:
            raise RadVLSMInputError(f"expected (B={b}, K, 1, S, S), got {tuple(mask_logits.shape)}", "mask_logits")
        weights = F.adaptive_avg_pool2d(torch.sigmoid(mask_logits[:, :, 0]), (h, w))  # (B, K, h, w)
        summed = torch.einsum("bkhw,bchw->bkc", weights, image_embeddings)
        return summed / weights.sum(dim=(-2, -1))[..., None].clamp_min(1e-6)


def build_mask_decoder(variant: str = "litemedsam", checkpoint: str | Path | None = None) -> PromptableMaskDecoder:
    """Build the prompt encoder + mask decoder, with weights read from local files only.

    Args:
        variant: ``"litemedsam"`` (C=256, 64x64 embedding, 256 frame) or ``"tiny"`` (randomly initialised,
            C=32, 16x16 embedding, 64 frame; matches ``build_image_encoder("tiny")``).
        checkpoint: a weights file with ``prompt_encoder.*`` and ``mask_decoder.*`` keys (a full LiteMedSAM
            state dict; other keys are ignored). ``None``: the packaged LiteMedSAM weights for
            ``"litemedsam"``, random initialisation for ``"tiny"``.

    Returns:
        The decoder in eval mode.
    """
    config = decoder_config(variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = PromptableMaskDecoder(config)
    if checkpoint is None and variant == "litemedsam":
        checkpoint = litemedsam_checkpoint_path()
    if checkpoint is not None:
        state = load_checkpoint_state(checkpoint)
        state = {k: v for k, v in state.items() if k.startswith(DECODER_PREFIXES)}
        load_module_state(decoder, state, str(checkpoint))
        logger.info("mask decoder %s: weights from %s", variant, checkpoint)
    return decoder.eval()
