"""TrainingStep computes exactly the stage losses, and under DDP (2 gloo processes) averages the gradients."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from radvlsm.config import build_network
from radvlsm.engine.losses import RadVLSMLoss
from radvlsm.engine.prompt_sampling import foreground_points
from radvlsm.engine.training_step import TrainingStep, wrap_distributed
from radvlsm.engine.workflow import stage_parameters
from radvlsm.models.candidates import boxes_from_masks

TEXTS = ["oval circumscribed hypoechoic mass", "irregular spiculated mass with posterior shadowing"]

TINY_NETWORK = {"variant": "tiny", "text_encoder": "tiny", "embed_dim": 32}  # as tests/conftest.py


def synthetic_batch(seed: int, model) -> dict:
    """Two images' embeddings, box masks, diagnoses and prompts, different for each ``seed``."""
    g = torch.Generator().manual_seed(seed)
    size = model.image_size
    images = torch.rand(2, 1, size, size, generator=g)
    labels = torch.zeros(2, 1, size, size)
    for i in range(2):
        y, x = (int(v) for v in torch.randint(4, size // 2, (2,), generator=g))
        labels[i, 0, y : y + size // 3, x : x + size // 3] = 1
    boxes = boxes_from_masks(labels)
    return {
        "embeddings": model.encode_image(images).detach(),
        "labels": labels,
        "diagnosis": torch.tensor([0, 1]),
        "texts": TEXTS,
        "boxes": boxes,
        "points": foreground_points(labels, g),
    }


@pytest.mark.parametrize("stage", ["align", "segment"])
def test_training_step_computes_the_stage_loss(tiny_model, stage: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(radiomics=False, n_ctx=2).eval()
    loss = RadVLSMLoss()
    b = synthetic_batch(1, model)
    with torch.no_grad():
        total, terms = TrainingStep(model, loss, stage)(
            b["embeddings"], b["labels"], b["diagnosis"], b["texts"], b["boxes"], b["points"]
        )
        if stage == "align":
            expected, expected_terms = loss.align(model, b["embeddings"], b["labels"], b["texts"], b["diagnosis"])
        else:
            expected, expected_terms, _ = loss.segment(
                model, b["embeddings"], b["labels"], b["diagnosis"], b["boxes"], b["points"]
            )
    assert torch.equal(total, expected)
    assert terms.keys() == expected_terms.keys()


def test_training_step_rejects_unknown_stages_and_missing_inputs(tiny_model) -> None:
    model = tiny_model(radiomics=False)
    with pytest.raises(ValueError, match="unknown training stage"):
        TrainingStep(model, RadVLSMLoss(), "fusion")
    b = synthetic_batch(0, model)
    with pytest.raises(ValueError, match="truth boxes"):
        TrainingStep(model, RadVLSMLoss(), "segment")(b["embeddings"], b["labels"], b["diagnosis"])


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: a segment-stage step with DDP on its own data; saves local and averaged gradients and weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = build_network(**TINY_NETWORK, radiomics=False)  # a spawned process sees no fixtures
        params = stage_parameters(model, "segment")
        ddp = wrap_distributed(TrainingStep(model, RadVLSMLoss(), "segment"), "cpu")
        initial = torch.cat([p.detach().flatten() for p in params])
        b = synthetic_batch(100 + rank, model)  # each rank its own data
        args = (b["embeddings"], b["labels"], b["diagnosis"], None, b["boxes"], b["points"])
        model.train()
        torch.manual_seed(1000 + rank)  # the same dropout masks in both passes
        with ddp.no_sync():  # local gradient only, for reference
            ddp(*args)[0].backward()
        local = [None if p.grad is None else p.grad.clone() for p in params]
        optimizer = torch.optim.SGD(params, lr=0.1)
        optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(1000 + rank)
        ddp(*args)[0].backward()
        averaged = [None if p.grad is None else p.grad.clone() for p in params]
        optimizer.step()
        after = torch.cat([p.detach().flatten() for p in params])
        torch.save({"initial": initial, "local": local, "averaged": averaged, "after": after}, f"{out_dir}/{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_training_step_averages_gradients_over_ranks(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert torch.equal(r0["initial"], r1["initial"])  # rank 0's weights were broadcast on wrapping
    pairs = [(a, b) for a, b in zip(r0["local"], r1["local"], strict=True) if a is not None and b is not None]
    assert pairs and any(not torch.allclose(a, b) for a, b in pairs)  # the ranks saw different data
    for i, (a, b) in enumerate(zip(r0["local"], r1["local"], strict=True)):
        g0, g1 = r0["averaged"][i], r1["averaged"][i]
        if a is None and b is None:
            continue
        expected = ((a if a is not None else 0) + (b if b is not None else 0)) / 2
        torch.testing.assert_close(g0, expected, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(g1, expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(r0["after"], r1["after"])  # identical weights after the optimiser step
    assert not torch.equal(r0["after"], r0["initial"])
