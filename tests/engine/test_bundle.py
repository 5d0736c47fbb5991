"""Bundle helpers added for cached augmented views: views of items, subsets, encoding a dataset once."""

from __future__ import annotations

import pytest
import torch

from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.bundle import encode_datasets, random_subset, subset, with_views
from radvlsm.errors import RadVLSMInputError


def test_views_repeat_every_item_view_major() -> None:
    items = [{"id": "a"}, {"id": "b"}]
    out = with_views(items, 3)
    assert [(d["id"], d["view"]) for d in out] == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert "view" not in items[0]  # the datalist itself is not changed
    with pytest.raises(RadVLSMInputError):
        with_views(items, 0)


def test_subsets_are_seeded_sorted_and_whole_when_n_is_zero_or_too_large() -> None:
    items = [{"i": i} for i in range(20)]
    picked = subset(items, 5, seed=3)
    assert len(picked) == 5 and picked == subset(items, 5, seed=3) and picked != subset(items, 5, seed=4)
    assert [d["i"] for d in picked] == sorted(d["i"] for d in picked)
    assert subset(items, 0) == items and subset(items, 50) == items
    data = list(range(20))
    sub = random_subset(data, 5, seed=3)
    assert list(sub) == [d["i"] for d in picked]  # one draw for both
    assert random_subset(data, 0) is data and random_subset(data, 20) is data


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return x.repeat(1, 2, 1, 1)


def test_encoding_a_dataset_fills_the_cache_once() -> None:
    encoder = _Encoder()
    images = [{"image": torch.rand(1, 8, 8)} for _ in range(5)]
    cache = EmbeddingCache(max_items=10)
    assert encode_datasets([images[:3], images[3:]], cache, encoder, batch_size=2) == {"found": 0, "computed": 5}
    assert encode_datasets([images], cache, encoder, batch_size=2) == {"found": 5, "computed": 0}
    assert encoder.images == 5
