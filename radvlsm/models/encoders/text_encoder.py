"""Frozen text towers loaded offline: the packaged all-MiniLM-L6-v2, a tiny BERT, or open_clip towers.

:class:`TextEncoder` maps texts to L2-normalised ``(T, D)`` embeddings, caching each string. BERT towers
(MiniLM, tiny) also expose their token embeddings so a CoOp prompt learner can insert learnable context
vectors after ``[CLS]`` and encode with gradients flowing back to them. open_clip towers (e.g. BiomedCLIP
``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``) load from a local checkpoint file or
the local Hugging Face cache; nothing is downloaded unless ``allow_download=True``. Where the weights are
found (packaged MiniLM, local folders, the Hugging Face cache) is :mod:`radvlsm.models.encoders.text_hub`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from radvlsm.errors import RadVLSMInputError
from radvlsm.models.encoders.text_hub import local_model_folder, minilm_model_path, resolve_open_clip_pretrained

logger = logging.getLogger(__name__)

OPEN_CLIP_PREFIX = "open_clip:"


class TextEncoder(nn.Module):
    """Base text tower: ``encode(texts) -> (T, D)`` L2-normalised, cached per string; frozen by default.

    Subclasses implement :meth:`_encode_batch`; BERT towers also the CoOp hooks :meth:`token_embeddings`
    and :meth:`encode_embeddings`.

    Args:
        embed_dim: output dimension ``D``.
        hidden_size: token-embedding width ``H`` (``None`` where not exposed).
        frozen: ``True`` sets ``requires_grad=False`` and keeps the tower in eval mode even when a parent
            module calls ``.train()``.
    """

    def __init__(self, embed_dim: int, hidden_size: int | None, frozen: bool = True) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.frozen = frozen
        self._cache: dict[str, torch.Tensor] = {}

    def _finish_init(self) -> None:
        """Apply the freezing policy once the sub-modules exist."""
        if self.frozen:
            self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> TextEncoder:
        """Set training mode; a frozen tower stays in eval mode (no dropout, stable cached embeddings)."""
        return super().train(mode and not self.frozen)

    @property
    def device(self) -> torch.device:
        """Device of the tower's weights."""
        return next(self.parameters()).device

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed texts without gradients, caching each string's embedding on this instance.

        Args:
            texts: ``T`` strings.

        Returns:
            ``(T, D)`` float32, L2-normalised rows, on the tower's device.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise RadVLSMInputError("expected a list of strings", "texts")
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                rows = self._encode_batch(missing).float()
            self._cache.update({t: row.detach().cpu() for t, row in zip(missing, rows, strict=True)})
        if not texts:
            return torch.zeros((0, self.embed_dim), device=self.device)
        return torch.stack([self._cache[t] for t in texts]).to(self.device)

    def clear_cache(self) -> None:
        """Forget cached embeddings (call after changing the weights)."""
        self._cache.clear()

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        """``(T, D)`` L2-normalised embeddings of non-empty ``texts``."""
        raise NotImplementedError

    def token_embeddings(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings for CoOp (BERT towers only).

        Args:
            texts: ``T`` strings.

        Returns:
            ``inputs_embeds (T, L, H)`` (word embeddings, ``[CLS]`` first, padded) and
            ``attention_mask (T, L)`` (1 for tokens, 0 for padding).
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose token embeddings (CoOp needs a BERT tower)")

    def encode_embeddings(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode token embeddings with gradient flow to ``inputs_embeds`` (BERT towers only).

        Args:
            inputs_embeds: ``(T, L, H)``.
            attention_mask: ``(T, L)``.

        Returns:
            ``(T, D)`` L2-normalised embeddings.
        """
        raise NotImplementedError(f"{type(self).__name__} does not encode token embeddings (CoOp needs a BERT tower)")


class BertTextEncoder(TextEncoder):
    """A Hugging Face BERT tower with mean pooling over the attention mask (sentence-transformers style).

    Args:
        model: a ``transformers`` BERT-like model (``embeddings.word_embeddings``, ``inputs_embeds`` input).
        tokenizer: its tokenizer.
        max_length: longest token sequence (longer texts are truncated).
        frozen: see :class:`TextEncoder`.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 256, frozen: bool = True) -> None:
        hidden = int(model.config.hidden_size)
        super().__init__(embed_dim=hidden, hidden_size=hidden, frozen=frozen)
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._finish_init()

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokenize(texts)
        hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        return _mean_pool_normalise(hidden, enc["attention_mask"])

    def token_embeddings(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`TextEncoder.token_embeddings`."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise RadVLSMInputError("expected a non-empty list of strings", "texts")
        enc = self._tokenize(texts)
        return self.model.embeddings.word_embeddings(enc["input_ids"]), enc["attention_mask"]

    def encode_embeddings(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """See :meth:`TextEncoder.encode_embeddings`."""
        if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.hidden_size:
            raise RadVLSMInputError(
                f"expected (T, L, {self.hidden_size}), got {tuple(inputs_embeds.shape)}", "inputs_embeds"
            )
        if tuple(attention_mask.shape) != tuple(inputs_embeds.shape[:2]):
            raise RadVLSMInputError(
                f"expected {tuple(inputs_embeds.shape[:2])}, got {tuple(attention_mask.shape)}", "attention_mask"
            )
        hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return _mean_pool_normalise(hidden, attention_mask)


class OpenCLIPTextEncoder(TextEncoder):
    """The text tower of an open_clip model (``encode_text(..., normalize=True)``).

    Args:
        model: an open_clip ``CLIP``/``CustomTextCLIP``.
        tokenizer: ``open_clip.get_tokenizer(name)``.
        frozen: see :class:`TextEncoder`.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, frozen: bool = True) -> None:
        with torch.no_grad():
            embed_dim = int(model.encode_text(tokenizer(["a"])).shape[-1])
        super().__init__(embed_dim=embed_dim, hidden_size=_open_clip_text_width(model), frozen=frozen)
        self.model = model
        self.tokenizer = tokenizer
        self._finish_init()

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)


def _mean_pool_normalise(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(T, L, H)`` token states over the ``(T, L)`` mask, L2-normalised -> ``(T, H)``."""
    mask = attention_mask.to(hidden.dtype)[..., None]
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
    return F.normalize(pooled, dim=-1)


def _open_clip_text_width(model: nn.Module) -> int | None:
    """Token width of an open_clip text tower (CLIP ``transformer.width`` or an HF tower's ``hidden_size``)."""
    for owner in (model, getattr(model, "text", None)):
        transformer = getattr(owner, "transformer", None)
        if isinstance(getattr(transformer, "width", None), int):
            return transformer.width
        hidden = getattr(getattr(transformer, "config", None), "hidden_size", None)
        if isinstance(hidden, int):
            return hidden
    return None


def _load_bert(path: Path, frozen: bool) -> BertTextEncoder:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not (path / "config.json").is_file():
        raise RadVLSMInputError("not a Hugging Face model folder (no config.json)", str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a local folder loads in well under a second: no "Loading weights" bar
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    max_length = min(int(getattr(tokenizer, "model_max_length", 512)), 512)
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = int(json.loads(st_config.read_text()).get("max_seq_length", max_length))
    logger.info("text encoder: %s (hidden %d)", path, model.config.hidden_size)
    return BertTextEncoder(model, tokenizer, max_length=max_length, frozen=frozen)


def _build_tiny(frozen: bool) -> BertTextEncoder:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_model_path()), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config, add_pooling_layer=False)
    return BertTextEncoder(model, tokenizer, max_length=128, frozen=frozen)


def _build_open_clip(
    model_name: str, pretrained: str | None, allow_download: bool, frozen: bool
) -> OpenCLIPTextEncoder:
    import open_clip

    if not model_name:
        raise RadVLSMInputError(f"expected '{OPEN_CLIP_PREFIX}<model_name>'", "name")
    if not allow_download:
        pretrained = resolve_open_clip_pretrained(model_name, pretrained)
    try:
        model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as err:  # network, hub and checkpoint errors from open_clip all end here
        raise RadVLSMInputError(
            f"could not load open_clip model {model_name!r} (pretrained={pretrained!r}): {type(err).__name__}: {err}",
            "name",
        ) from err
    logger.info("text encoder: open_clip %s (pretrained=%s)", model_name, pretrained)
    return OpenCLIPTextEncoder(model, tokenizer, frozen=frozen)


def build_text_encoder(
    name: str = "minilm", pretrained: str | None = None, frozen: bool = True, allow_download: bool = False
) -> TextEncoder:
    """Build a text tower from local files.

    Args:
        name: ``"minilm"`` (packaged all-MiniLM-L6-v2, D=384), ``"tiny"`` (random 1-layer BERT, hidden 32,
            MiniLM tokenizer; for tests), ``"open_clip:<model_name>"`` or ``"open_clip:hf-hub:<repo>"``, or
            a path to a local Hugging Face BERT folder.
        pretrained: open_clip only: a local checkpoint file or an open_clip tag (``None``: random weights
            for a named model; a hub repo brings its own).
        frozen: ``requires_grad=False`` and eval mode (the default).
        allow_download: open_clip only: let open_clip fetch missing weights (otherwise only local files
            and the local Hugging Face cache are used and a missing one is a clear error).

    Returns:
        The tower (eval mode).
    """
    if name == "minilm":
        return _load_bert(minilm_model_path(), frozen)
    if name == "tiny":
        return _build_tiny(frozen)
    if name.startswith(OPEN_CLIP_PREFIX):
        return _build_open_clip(name.removeprefix(OPEN_CLIP_PREFIX), pretrained, allow_download, frozen)
    folder = local_model_folder(name)
    if folder is not None:
        return _load_bert(folder, frozen)
    raise RadVLSMInputError(
        f"unknown text encoder {name!r}; expected 'minilm', 'tiny', 'open_clip:<model>' or a local model folder", "name"
    )
