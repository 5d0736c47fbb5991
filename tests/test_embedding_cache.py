"""The embedding cache computes each image once, in memory and on disk, keyed by content."""

from __future__ import annotations

import torch

from radvlsm.embedding_cache import EmbeddingCache


class CountingEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += x.shape[0]
        return x.mean(dim=1, keepdim=True).repeat(1, 4, 1, 1)[..., ::4, ::4]


def test_each_image_encoded_once_and_order_kept() -> None:
    enc, cache = CountingEncoder(), EmbeddingCache(max_items=10)
    a, b = torch.rand(2, 1, 16, 16)
    first = cache.get_or_compute(torch.stack([a, b]), enc)
    second = cache.get_or_compute(torch.stack([b, a]), enc)
    assert enc.images == 2 and enc.calls == 1
    torch.testing.assert_close(second[0], first[1], atol=1e-3, rtol=1e-3)
    assert cache.hits == 2 and cache.misses == 2


def test_lru_eviction_and_disk_mirror(tmp_path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(max_items=1, cache_dir=tmp_path, namespace="x")
    imgs = torch.rand(2, 1, 1, 8, 8)
    cache.get_or_compute(imgs[0], enc)
    cache.get_or_compute(imgs[1], enc)
    assert len(cache) == 1 and len(list(tmp_path.glob("*.pt"))) == 2
    fresh = EmbeddingCache(max_items=1, cache_dir=tmp_path, namespace="x")
    fresh.get_or_compute(imgs[0], enc)
    assert enc.images == 2  # read back from disk, not recomputed
    other = EmbeddingCache(max_items=1, cache_dir=tmp_path, namespace="y")
    other.get_or_compute(imgs[0], enc)
    assert enc.images == 3  # another encoder namespace never reuses the file


def test_damaged_disk_entry_is_recomputed(tmp_path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(cache_dir=tmp_path)
    img = torch.rand(1, 1, 8, 8)
    cache.get_or_compute(img, enc)
    next(tmp_path.glob("*.pt")).write_bytes(b"garbage")
    EmbeddingCache(cache_dir=tmp_path).get_or_compute(img, enc)
    assert enc.images == 2


def test_embeddings_are_computed_in_eval_mode() -> None:
    encoder = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)).train()
    images = torch.rand(4, 1, 8, 8)
    cached = EmbeddingCache().get_or_compute(images, encoder)
    assert encoder.training  # mode restored
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(cached, encoder(images), atol=1e-2, rtol=1e-2)  # float16 storage


def test_disk_cache_is_reused_and_keyed_by_encoder_weights(tiny_model, tmp_path) -> None:
    first = tiny_model().eval()
    cache = EmbeddingCache.for_encoder(first.image_encoder, max_items=4, cache_dir=tmp_path / "emb")
    image = torch.rand(1, 1, first.image_size, first.image_size)
    reference = cache.get_or_compute(image, first.image_encoder)
    assert len(list((tmp_path / "emb").glob("*.pt"))) == 1

    torch.manual_seed(0)
    again = tiny_model()
    again.image_encoder.load_state_dict(first.image_encoder.state_dict())
    again_cache = EmbeddingCache.for_encoder(again.eval().image_encoder, max_items=4, cache_dir=tmp_path / "emb")
    assert torch.allclose(again_cache.get_or_compute(image, again.image_encoder), reference, atol=1e-2)
    assert again_cache.hits == 1 and again_cache.misses == 0

    tuned = tiny_model()
    with torch.no_grad():
        next(tuned.image_encoder.parameters()).add_(1.0)
    tuned_cache = EmbeddingCache.for_encoder(tuned.eval().image_encoder, max_items=4, cache_dir=tmp_path / "emb")
    tuned_cache.get_or_compute(image, tuned.image_encoder)
    assert tuned_cache.misses == 1  # other encoder weights never read the first model's files
    assert tuned_cache.namespace != cache.namespace


def test_compute_with_runs_in_place_of_the_given_encoder() -> None:
    module, runtime = CountingEncoder(), CountingEncoder()
    cache = EmbeddingCache(max_items=10, compute_with=runtime)
    images = torch.rand(3, 1, 16, 16)
    out = cache.get_or_compute(images, module)
    assert runtime.images == 3 and module.calls == 0
    torch.testing.assert_close(out, CountingEncoder()(images), atol=1e-3, rtol=1e-3)
