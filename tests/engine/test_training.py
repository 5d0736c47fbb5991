"""A short training run on phantom data lowers each stage's loss (tiny model, deterministic)."""

from __future__ import annotations

import pytest
import torch

from radvlsm.embedding_cache import EmbeddingCache
from radvlsm.engine.bundle import prepare_dataset, prepare_splits, run_fusion_stage
from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.engine.prompt_sampling import foreground_points
from radvlsm.engine.workflow import build_stage_trainer, make_loader, stage_parameters
from radvlsm.models.candidates import boxes_from_masks


def fixed_batch_loss(model, stage, batch, cache, loss) -> float:
    model.eval()
    torch.manual_seed(0)
    images = batch["image"].float()
    labels = (batch["label"] > 0.5).float()
    diagnosis = batch["diagnosis"].long()
    emb = cache.get_or_compute(images, model.image_encoder)
    with torch.no_grad():
        if stage == "align":
            return float(loss.align(model, emb, labels, list(batch["text"]), diagnosis)[0])
        boxes, points = boxes_from_masks(labels), foreground_points(labels, torch.Generator().manual_seed(0))
        return float(loss.segment(model, emb, labels, diagnosis, boxes, points)[0])


def test_short_training_lowers_the_loss(tiny_model, stage_settings, phantom_dir, tmp_path) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=True, n_ctx=2)
    report = prepare_dataset(str(phantom_dir))
    splits = prepare_splits(report, "train", None, str(tmp_path), seed=0)
    assert (tmp_path / "split.json").is_file()
    loader = make_loader(splits["training"], "eval", batch_size=4, shuffle=True, image_size=model.image_size)
    batch = next(iter(make_loader(splits["training"], "eval", batch_size=8, image_size=model.image_size)))
    cache, loss = EmbeddingCache(100), RadVLSMLoss()
    for stage, epochs, lr in (("align", 15, 3e-3), ("segment", 4, 1e-3)):
        before = fixed_batch_loss(model, stage, batch, cache, loss)
        build_stage_trainer(stage, model, loader, epochs, lr, loss, cache, "cpu", stage_settings, seed=0).run()
        after = fixed_batch_loss(model, stage, batch, cache, loss)
        assert after < before, (stage, before, after)
    fusion_loader = make_loader(splits["training"], "eval", batch_size=4, image_size=model.image_size)
    result = run_fusion_stage(model, fusion_loader, cache, "cpu", epochs=100, lr=1e-3, weight_decay=1e-3)
    assert result["fusion_ce_after"] < result["fusion_ce_before"]
    assert model.standardizer.std.min() > 0


def test_stage_parameters_freeze_everything_else(tiny_model) -> None:
    model = tiny_model(radiomics=False)
    params = stage_parameters(model, "align")
    assert params and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for p in model.mask_decoder.parameters())
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    seg = {id(p) for p in stage_parameters(model, "segment")}
    assert {id(p) for p in model.auto_decoder.parameters()} <= seg  # the automatic path's copy is tuned
    assert not any(p.requires_grad for p in model.mask_decoder.parameters())  # LiteMedSAM's, for user boxes
    assert not any(p.requires_grad for p in model.aligner.parameters())


def test_align_step_on_a_batch_of_one_image(tiny_model) -> None:
    """A last batch of one (N % batch_size == 1) has no InfoNCE negatives; the other terms still train."""
    torch.manual_seed(0)
    model = tiny_model()
    size = model.image_size
    label = torch.zeros(1, 1, size, size)
    label[..., 10:30, 12:40] = 1
    embeddings = model.encode_image(torch.rand(1, 1, size, size))
    total, terms = RadVLSMLoss().align(model, embeddings, label, ["oval circumscribed mass"], torch.tensor([0]))
    assert torch.isfinite(total) and float(terms["contrastive"]) == 0.0
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aligner.parameters())


def test_cached_loader_gives_the_same_items(phantom_dir) -> None:
    items = prepare_splits(prepare_dataset(str(phantom_dir)), "all")["all"][:3]
    plain = next(iter(make_loader(items, "eval", batch_size=3, image_size=64)))
    cached = next(iter(make_loader(items, "eval", batch_size=3, image_size=64, cache=True)))
    assert torch.equal(torch.as_tensor(plain["image"]), torch.as_tensor(cached["image"]))
    assert torch.equal(torch.as_tensor(plain["label"]), torch.as_tensor(cached["label"]))


def test_region_stage_learns_and_leaves_the_automatic_pipeline_alone(
    tiny_model, stage_settings, phantom_dir, tmp_path
) -> None:
    """Stage ``region`` lowers its loss and changes only the region path (automatic outputs stay identical)."""
    torch.manual_seed(0)
    model = tiny_model(radiomics=False)
    report = prepare_dataset(str(phantom_dir))
    splits = prepare_splits(report, "train", None, str(tmp_path), seed=0)
    loader = make_loader(splits["training"], "eval", batch_size=4, shuffle=True, image_size=model.image_size)
    batch = next(iter(make_loader(splits["training"], "eval", batch_size=8, image_size=model.image_size)))
    cache, loss = EmbeddingCache(100), RadVLSMLoss()
    images, labels = batch["image"].float(), (batch["label"] > 0.5).float()
    emb = cache.get_or_compute(images, model.image_encoder)
    boxes, points = boxes_from_masks(labels), foreground_points(labels, torch.Generator().manual_seed(0), n=2)

    def region_loss() -> tuple[float, dict]:
        model.eval()
        with torch.no_grad():
            total, terms = loss.region(
                model, emb, labels, batch["diagnosis"].long(), list(batch["text"]), boxes, points
            )
        return float(total), {k: float(v) for k, v in terms.items()}

    before, terms_before = region_loss()
    assert terms_before["global_context"] < 1e-6  # zero-initialised: the prompt changes nothing yet
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("region_", "text_encoder"))}
    with torch.no_grad():
        auto_before = model(embeddings=emb).fused.diag_logits
    build_stage_trainer("region", model, loader, 6, 3e-3, loss, cache, "cpu", stage_settings, seed=0).run()
    after, terms_after = region_loss()
    assert after < before, (terms_before, terms_after)
    assert model.region_prompt.to_features.weight.abs().sum() > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(embeddings=emb).fused.diag_logits, auto_before)


def test_region_stage_needs_a_region_path(tiny_model, stage_settings) -> None:
    model = tiny_model(radiomics=False, region_prompt=False)
    with pytest.raises(ValueError, match="nothing to train"):
        build_stage_trainer("region", model, [], 1, 1e-3, RadVLSMLoss(), None, "cpu", stage_settings)
