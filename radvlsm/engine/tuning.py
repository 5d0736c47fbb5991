"""Choosing MCRA's settings on validation images, so that the fused mask is at least the single best candidate's.

:func:`tune_mcra` runs the automatic pipeline once per validation image, keeps the candidates, then replays only
MCRA for every combination of ``cluster_iou``, ``keep_threshold`` and ``temperature`` in a grid. It writes the
table and the best setting to a JSON file; the setting goes into ``network_def`` (``inference.json``), the one
place that sizes the model.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import torch
from monai.metrics import compute_dice

from radvlsm.atomic_files import atomic_write_text
from radvlsm.embedding_cache import EmbeddingCache

logger = logging.getLogger(__name__)


def _dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image Dice of ``(B, H, W)`` binary masks (MONAI's; two empty masks: 1)."""
    return compute_dice(pred[:, None].float(), truth[:, None].float(), include_background=True, ignore_empty=False)[
        :, 0
    ]


@torch.no_grad()
def tune_mcra(
    model,
    loader,
    cache: EmbeddingCache | None,
    device: torch.device | str,
    grid: dict[str, list[float]],
    out_path: str,
) -> dict:
    """Grid-search MCRA's ``cluster_iou``, ``keep_threshold`` and ``temperature`` on validation images.

    Args:
        model: the trained :class:`radvlsm.models.radvlsm.RadVLSM` (left unchanged).
        loader: validation batches (``image``, ``label``).
        cache: embedding cache (None: encode every image).
        device: where the model runs.
        grid: ``{"cluster_iou": [...], "keep_threshold": [...], "temperature": [...]}``.
        out_path: JSON report: the chosen setting, its Dice, the single best candidate's and the current one's.

    Returns:
        the report.
    """
    device = torch.device(device)
    model.to(device).eval()
    kept: list[tuple[torch.Tensor, ...]] = []
    for batch in loader:
        images = torch.as_tensor(batch["image"]).to(device, torch.float32)
        labels = torch.as_tensor(batch["label"]).to(device) > 0.5
        emb = cache.get_or_compute(images, model.image_encoder) if cache is not None else model.encode_image(images)
        out = model(embeddings=emb)
        kept.append(
            (
                out.mask_logits.half().cpu(),
                out.candidate_diag_logits.cpu(),
                out.region_emb.cpu(),
                out.reliability_logits.cpu(),
                out.candidates.valid.cpu(),
                labels.cpu(),
            )
        )
    mcra = model.mcra
    current = (mcra.cluster_iou, mcra.keep_threshold, mcra.temperature)
    single = torch.cat(
        [
            _dice(m.float()[torch.arange(len(m)), r.masked_fill(~v, float("-inf")).argmax(1), 0] > 0, t[:, 0])
            for m, _, _, r, v, t in kept
        ]
    )
    table = []
    try:
        for ciou, keep, temp in itertools.product(grid["cluster_iou"], grid["keep_threshold"], grid["temperature"]):
            mcra.cluster_iou, mcra.keep_threshold, mcra.temperature = float(ciou), float(keep), float(temp)
            dice = torch.cat(
                [_dice(mcra(m.float(), d, e, r, v).mask_prob[:, 0] > 0.5, t[:, 0]) for m, d, e, r, v, t in kept]
            )
            table.append({"cluster_iou": ciou, "keep_threshold": keep, "temperature": temp, "dice": float(dice.mean())})
    finally:
        mcra.cluster_iou, mcra.keep_threshold, mcra.temperature = current
    best = max(table, key=lambda row: row["dice"])
    now = next(
        (r for r in table if (r["cluster_iou"], r["keep_threshold"], r["temperature"]) == current), {"dice": None}
    )
    report = {
        "n_images": int(single.numel()),
        "chosen": {k: best[k] for k in ("cluster_iou", "keep_threshold", "temperature")},
        "chosen_dice": best["dice"],
        "single_best_candidate_dice": float(single.mean()),
        "current": dict(zip(("cluster_iou", "keep_threshold", "temperature"), current, strict=True)),
        "current_dice": now["dice"],
        "table": table,
    }
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out_path), json.dumps(report, indent=2))
    logger.info(
        "MCRA on %d validation images: best %s Dice %.4f (single best candidate %.4f, current %s); written to %s",
        report["n_images"],
        report["chosen"],
        best["dice"],
        report["single_best_candidate_dice"],
        now["dice"],
        out_path,
    )
    return report
