"""Per-image cache of the click path's response-map candidates (computed once per image, not per click).

A click without a box is completed with a box from the automatic candidates of the lesion response map
(:meth:`radvlsm.models.radvlsm.RadVLSM.boxes_from_clicks`); those depend only on the image embedding, so
they are kept here, keyed by a hash of the embedding. The embedding itself lives in the (optionally
disk-backed, shared between processes) :class:`radvlsm.embedding_cache.EmbeddingCache`; the
candidates take a few tens of milliseconds to recompute from it, so each process keeps its own copy in memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

logger = logging.getLogger(__name__)


def embedding_key(embeddings: torch.Tensor) -> str:
    """Content hash of a ``(B, C, h, w)`` embedding batch (with its shape)."""
    data = embeddings.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha1(str(tuple(data.shape)).encode() + data.numpy().tobytes()).hexdigest()


def weights_fingerprint(*parts: object) -> str:
    """Cheap identity of module weights (storage address and in-place version of every tensor) and of plain
    objects' settings: it changes when weights are loaded, trained or moved, so cached results never go stale."""
    items: list[object] = []
    for part in parts:
        if isinstance(part, torch.nn.Module):
            items.extend((t.data_ptr(), t._version) for t in part.state_dict(keep_vars=True).values())
        else:
            items.append(repr(sorted(vars(part).items())) if hasattr(part, "__dict__") else repr(part))
    return hashlib.sha1(repr(items).encode()).hexdigest()[:16]


def array_key(array: np.ndarray) -> str:
    """Content hash of an image array (bytes, shape and dtype): cheaper than the preprocessing it saves."""
    arr = np.ascontiguousarray(array)
    return hashlib.sha1(f"{arr.shape}{arr.dtype}".encode() + arr.tobytes()).hexdigest()


class ValueCache:
    """LRU cache of the last few values of a computation keyed by a string: the click path's candidates
    (key: a weights fingerprint + :func:`embedding_key`), the predictor's model-frame input (:func:`array_key`),
    the lesion prompt's text embedding (a weights fingerprint + the prompt).

    Args:
        max_items: entries kept.
    """

    def __init__(self, max_items: int = 4) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, object] = OrderedDict()

    def get_or_compute(self, key: str, compute: Callable[[], object]) -> object:
        """The cached value for ``key``, or ``compute()``'s (then cached)."""
        if key not in self._items:
            self._items[key] = compute()
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return self._items[key]

    def clear(self) -> None:
        """Forget every entry."""
        self._items.clear()
