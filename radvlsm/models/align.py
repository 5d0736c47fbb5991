"""Image-text alignment: projection heads into a shared space, InfoNCE (open_clip ``ClipLoss``), CoOp context.

The image side has ONE linear projection (a 1x1 convolution) shared by patches, the pooled image and
mask-pooled regions, so a region embedding and the patches under it live in the same space. The text side
projects the frozen text tower's sentence embeddings. All outputs are L2-normalised.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn

from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp of exp(logit_scale)
_DUPLICATE_COSINE = 1.0 - 1e-5  # text embeddings this similar are treated as the same phrase


def _check_last_dim(x: torch.Tensor, dim: int, ndims: tuple[int, ...], name: str) -> None:
    if x.ndim not in ndims or x.shape[-1] != dim:
        kinds = " or ".join(f"{n}D" for n in ndims)
        raise RadVLSMInputError(f"expected a {kinds} tensor with last size {dim}, got shape {tuple(x.shape)}", name)


class SemanticAligner(nn.Module):
    """Projection heads of image features and text embeddings into one L2-normalised space of size ``E``.

    Args:
        image_dim: channels ``C`` of the image encoder output.
        text_dim: size ``Dt`` of the text encoder's sentence embedding.
        embed_dim: shared space size ``E``.
        init_logit_scale: initial ``log`` of the contrastive temperature's inverse (CLIP: ``log(1/0.07)``).
    """

    def __init__(
        self, image_dim: int, text_dim: int, embed_dim: int = 256, init_logit_scale: float = math.log(1 / 0.07)
    ) -> None:
        super().__init__()
        if min(image_dim, text_dim, embed_dim) < 1:
            raise RadVLSMInputError(
                f"dimensions must be positive, got image_dim={image_dim}, text_dim={text_dim}, embed_dim={embed_dim}",
                "SemanticAligner",
            )
        self.image_dim = image_dim
        self.text_dim = text_dim
        self.embed_dim = embed_dim
        self.image_proj = nn.Conv2d(image_dim, embed_dim, kernel_size=1)
        # local context for per-patch embeddings (lesion focusing): a residual 3x3 block, zero-initialised so
        # patches start as the plain linear projection shared with global and region vectors
        hidden = min(image_dim, 128)
        self.patch_context = nn.Sequential(
            nn.Conv2d(image_dim, hidden, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, image_dim, kernel_size=1),
        )
        nn.init.zeros_(self.patch_context[2].weight)
        nn.init.zeros_(self.patch_context[2].bias)
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    def scale(self) -> torch.Tensor:
        """The contrastive scale ``exp(logit_scale)`` clamped to at most 100 (as CLIP), a scalar tensor."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def _project_vectors(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.image_proj.weight.view(self.embed_dim, self.image_dim)
        return F.normalize(F.linear(x, weight, self.image_proj.bias), dim=-1)

    def project_patches(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-patch embeddings.

        Args:
            feats: ``(B, C, h, w)`` image encoder output.

        Returns:
            ``(B, E, h, w)``, L2-normalised over ``E``.
        """
        if feats.ndim != 4 or feats.shape[1] != self.image_dim:
            raise RadVLSMInputError(f"expected (B, {self.image_dim}, h, w), got {tuple(feats.shape)}", "feats")
        return F.normalize(self.image_proj(feats + self.patch_context(feats)), dim=1)

    def project_global(self, feats: torch.Tensor) -> torch.Tensor:
        """Whole-image embedding: spatial mean of the features, then the shared projection.

        Args:
            feats: ``(B, C, h, w)``.

        Returns:
            ``(B, E)``, L2-normalised.
        """
        if feats.ndim != 4 or feats.shape[1] != self.image_dim:
            raise RadVLSMInputError(f"expected (B, {self.image_dim}, h, w), got {tuple(feats.shape)}", "feats")
        return self._project_vectors(feats.mean(dim=(2, 3)))

    def project_region(self, region: torch.Tensor) -> torch.Tensor:
        """Region (mask-pooled) embeddings through the shared image projection.

        Args:
            region: ``(B, K, C)`` or ``(B, C)``.

        Returns:
            ``(B, K, E)`` or ``(B, E)``, L2-normalised.
        """
        _check_last_dim(region, self.image_dim, (2, 3), "region")
        return self._project_vectors(region)

    def project_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text embeddings into the shared space.

        Args:
            text: ``(T, Dt)`` sentence embeddings of the text tower.

        Returns:
            ``(T, E)``, L2-normalised.
        """
        _check_last_dim(text, self.text_dim, (2,), "text")
        return F.normalize(self.text_proj(text), dim=-1)


def phrase_groups(text_emb: torch.Tensor) -> torch.Tensor:
    """Index of the first row equal (cosine > 1 - 1e-5) to each row: ``(N,)`` long; rows of one phrase share it."""
    t = F.normalize(text_emb.detach(), dim=-1)
    same = (t @ t.t()) > _DUPLICATE_COSINE
    return same.int().argmax(dim=1)  # first True per row (the diagonal is always True)


def contrastive_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    text_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between paired image and text embeddings, aware of repeated phrases.

    Without repeated phrases this is exactly ``open_clip.loss.ClipLoss``. When several images share one
    phrase (common: a batch holds several "oval, circumscribed" lesions), a plain ClipLoss would push an image
    away from its own phrase's copies. Then texts are deduplicated to ``U`` unique phrases and
    image->text is cross-entropy over the unique phrases, text->image is the multi-positive (MIL-NCE) loss
    ``-log`` of the softmax mass on all images of the phrase. Both reach 0 at perfect alignment.

    Args:
        image_emb: ``(N, E)`` image (region) embeddings.
        text_emb: ``(N, E)`` text embeddings, row ``i`` describes image ``i``.
        logit_scale: scalar tensor, the ``log`` of the scale (``SemanticAligner.logit_scale``); the scale used
            is ``exp(logit_scale)`` clamped to 100.
        text_ids: optional ``(N,)`` phrase ids (equal id = same phrase); default: rows with equal embeddings.

    Returns:
        Scalar loss.
    """
    if image_emb.ndim != 2 or text_emb.shape != image_emb.shape:
        raise RadVLSMInputError(
            f"expected two (N, E) tensors of one shape, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}",
            "contrastive_loss",
        )
    n = image_emb.shape[0]
    if n < 2:
        raise RadVLSMInputError(f"needs at least 2 pairs, got {n}", "image_emb")
    if text_ids is not None and tuple(text_ids.shape) != (n,):
        raise RadVLSMInputError(f"expected ({n},) phrase ids, got {tuple(text_ids.shape)}", "text_ids")
    scale = torch.as_tensor(logit_scale, device=image_emb.device).exp().clamp(max=MAX_LOGIT_SCALE)
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    clip_loss = ClipLoss()
    groups = phrase_groups(text_emb) if text_ids is None else text_ids.to(image_emb.device).long()
    unique, inverse = torch.unique(groups, return_inverse=True)
    if unique.numel() == n:
        return clip_loss(image_emb, text_emb, scale)
    # one representative row per phrase: the first occurrence
    first = torch.full((unique.numel(),), n, dtype=torch.long, device=image_emb.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=image_emb.device), reduce="amin")
    logits_per_image, logits_per_text = clip_loss.get_logits(image_emb, text_emb[first], scale)  # (N,U), (U,N)
    image_to_text = F.cross_entropy(logits_per_image, inverse)
    positives = inverse[None, :] == torch.arange(unique.numel(), device=image_emb.device)[:, None]  # (U, N)
    log_prob = logits_per_text.log_softmax(dim=-1)
    text_to_image = -torch.logsumexp(log_prob.masked_fill(~positives, float("-inf")), dim=-1).mean()
    return (image_to_text + text_to_image) / 2


class PromptLearner(nn.Module):
    """CoOp: ``n_ctx`` learnable context token embeddings inserted after the first ([CLS]) token.

    Args:
        n_ctx: number of context vectors.
        ctx_dim: token embedding size ``H`` of the text tower.
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(self, n_ctx: int, ctx_dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        if n_ctx < 1 or ctx_dim < 1:
            raise RadVLSMInputError(f"n_ctx and ctx_dim must be positive, got {n_ctx} and {ctx_dim}", "PromptLearner")
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(torch.randn(n_ctx, ctx_dim) * init_std)

    def forward(self, token_embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Insert the context.

        Args:
            token_embeds: ``(T, L, H)`` token embeddings (first token [CLS]).
            attention_mask: ``(T, L)`` 1 for real tokens, 0 for padding.

        Returns:
            ``inputs_embeds`` ``(T, L + n_ctx, H)`` and the extended mask ``(T, L + n_ctx)`` (same dtype).
        """
        if token_embeds.ndim != 3 or token_embeds.shape[-1] != self.ctx.shape[1] or token_embeds.shape[1] < 1:
            raise RadVLSMInputError(
                f"expected (T, L>=1, {self.ctx.shape[1]}), got {tuple(token_embeds.shape)}", "token_embeds"
            )
        if tuple(attention_mask.shape) != tuple(token_embeds.shape[:2]):
            raise RadVLSMInputError(
                f"expected {tuple(token_embeds.shape[:2])}, got {tuple(attention_mask.shape)}", "attention_mask"
            )
        t = token_embeds.shape[0]
        ctx = self.ctx.to(token_embeds.dtype)[None].expand(t, -1, -1)
        embeds = torch.cat([token_embeds[:, :1], ctx, token_embeds[:, 1:]], dim=1)
        ones = torch.ones(t, self.n_ctx, dtype=attention_mask.dtype, device=attention_mask.device)
        mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        return embeds, mask
