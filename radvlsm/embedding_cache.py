"""Cache of image-encoder outputs, so one encoder pass per image feeds everything downstream.

Interactive clicks on the same image reuse the embedding; training with a frozen encoder computes each
training image's embedding once instead of once per epoch (on 2 CPU cores the encoder dominates).
Keys are content hashes of the model-frame image plus a ``namespace`` that names the encoder weights,
so a changed image or encoder never returns a stale embedding.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

import torch

from radvlsm.atomic_files import atomic_write
from radvlsm.errors import RadVLSMInputError
from radvlsm.models.weights import read_torch_file

logger = logging.getLogger(__name__)


def image_key(image: torch.Tensor, namespace: str = "") -> str:
    """Content hash of a ``(1|C, S, S)`` model-frame image (and the encoder namespace)."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(namespace.encode() + data).hexdigest()


class EmbeddingCache:
    """LRU cache of ``(C, h, w)`` embeddings in memory, optionally mirrored to a folder.

    Args:
        max_items: embeddings kept in memory (least recently used dropped first).
        cache_dir: optional folder of ``<key>.pt`` files that survive restarts; processes (e.g. training ranks)
            may share it: each file is written under a per-process temporary name, then renamed atomically.
        namespace: identifies the encoder weights; part of every key.
        dtype: storage dtype (``float16`` halves memory; values are returned as float32).
        compute_with: computes missing embeddings in place of the encoder given to :meth:`get_or_compute`
            (an :class:`radvlsm.models.encoders.runtime.EncoderRuntime` of the same weights: the same values,
            several times faster on a CPU); None uses that encoder.
    """

    def __init__(
        self,
        max_items: int = 256,
        cache_dir: str | Path | None = None,
        namespace: str = "",
        dtype: torch.dtype = torch.float16,
        compute_with=None,
    ) -> None:
        self.max_items = max_items
        self.compute_with = compute_with
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.namespace = namespace
        self.dtype = dtype
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_encoder(
        cls,
        encoder: torch.nn.Module,
        max_items: int,
        cache_dir: str | Path | None = None,
        name: str = "encoder",
        compute_with=None,
    ) -> EmbeddingCache:
        """A cache whose namespace is a hash of ``encoder``'s weights: a tuned encoder never reuses stale files.

        Args:
            encoder: the image encoder whose outputs are cached.
            max_items: embeddings kept in memory.
            cache_dir: optional folder mirrored on disk (shared by processes and restarts).
            name: readable prefix of the namespace.
            compute_with: see the class (an encoder runtime of ``encoder``'s weights).
        """
        digest = hashlib.sha1()
        for tensor in encoder.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return cls(
            max_items=max_items,
            cache_dir=cache_dir or None,
            namespace=f"{name}:{digest.hexdigest()[:16]}",
            compute_with=compute_with,
        )

    def __len__(self) -> int:
        return len(self._items)

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def get_or_compute(self, images: torch.Tensor, encoder: torch.nn.Module) -> torch.Tensor:
        """Embeddings of a batch, computing (in one encoder call) only the ones not cached.

        Args:
            images: ``(B, 1|3, S, S)`` model-frame images.
            encoder: maps ``(N, ., S, S)`` to ``(N, C, h, w)``; run in eval mode without gradients.

        Returns:
            ``(B, C, h, w)`` float32 embeddings on ``images.device``.
        """
        keys = [image_key(img, self.namespace) for img in images]
        found: dict[int, torch.Tensor] = {}
        for i, key in enumerate(keys):
            value = self._items.get(key)
            if value is None and self.cache_dir is not None:
                path = self.cache_dir / f"{key}.pt"
                if path.is_file():
                    try:
                        value = read_torch_file(path)
                        self._remember(key, value)
                    except RadVLSMInputError:  # a damaged file is recomputed, not fatal
                        logger.warning("embedding cache file %s unreadable; recomputing", path)
                        value = None
            if value is not None:
                self._items.move_to_end(key)
                found[i] = value
        missing = [i for i in range(len(keys)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            encoder = self.compute_with if self.compute_with is not None else encoder
            # cached embeddings must not depend on the batch: eval mode (BatchNorm running statistics)
            was_training = encoder.training
            encoder.eval()
            with torch.no_grad():
                computed = encoder(images[missing])
            encoder.train(was_training)
            for j, i in enumerate(missing):
                value = computed[j].detach().to("cpu", self.dtype).contiguous()
                self._remember(keys[i], value)
                found[i] = value
                if self.cache_dir is not None:
                    # a unique temporary file per write: ranks sharing the folder never write the same file
                    with atomic_write(self.cache_dir / f"{keys[i]}.pt") as f:
                        torch.save(value, f)
        return torch.stack([found[i] for i in range(len(keys))]).to(images.device, torch.float32)
