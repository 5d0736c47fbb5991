"""Overlay pictures: image, truth and predicted contours, response map, candidate boxes by reliability."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_overlay(path: str | Path, image: np.ndarray, truth: np.ndarray | None, result) -> Path:
    """Write a two-panel PNG for one image.

    Left: the image with the truth contour (green), the predicted contour (red) and the candidate boxes
    coloured by reliability (yellow = most reliable, dim = least). Right: the lesion response map.

    Args:
        path: output PNG.
        image: ``(H, W)`` original image.
        truth: ``(H, W)`` truth mask or None.
        result: a :class:`radvlsm.models.result.RadVLSMResult`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax in axes:
        ax.imshow(image, cmap="gray")
        ax.set_axis_off()
    ax = axes[0]
    if truth is not None and truth.any():
        ax.contour(truth.astype(float), levels=[0.5], colors="lime", linewidths=1.2)
    if result.mask.any():
        ax.contour(result.mask.astype(float), levels=[0.5], colors="red", linewidths=1.2)
    cmap = plt.get_cmap("autumn_r")
    for cand in result.candidates:
        x1, y1, x2, y2 = cand.box
        colour = cmap(min(1.0, max(0.0, cand.reliability)))
        ax.add_patch(
            Rectangle(
                (x1, y1),
                x2 - x1,
                y2 - y1,
                fill=False,
                edgecolor=colour,
                linewidth=1.0,
                linestyle="-" if cand.kept else ":",
            )
        )
        ax.text(x1, y1 - 2, f"{cand.reliability:.2f}", color=colour, fontsize=7)
    ax.set_title(
        f"{result.diagnosis} (p={result.malignancy_probability:.2f})  green: truth, red: prediction", fontsize=8
    )
    if result.response_map is not None:
        axes[1].imshow(result.response_map, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[1].set_title("lesion response map", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
