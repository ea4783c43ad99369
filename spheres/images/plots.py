"""Figures of the image experiments: image grids, adversarial examples, error curves, weights.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state, no
backend choice); the caller saves it (``RunDir.save_figure``) or shows it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def image_grid_figure(rows: list[np.ndarray], row_titles: list[str], *, col_titles=None,
                      cmap="gray", vmin=0.0, vmax=1.0, scale: float = 1.1) -> Figure:
    """One row of 28×28 images per entry of ``rows``, titled by ``row_titles``."""
    ncol = max(len(r) for r in rows)
    fig = Figure(figsize=(scale * ncol + 1.5, scale * len(rows) + 0.5))
    for i, (imgs, title) in enumerate(zip(rows, row_titles)):
        for j in range(ncol):
            ax = fig.add_subplot(len(rows), ncol, i * ncol + j + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(np.asarray(imgs[j]).reshape(28, 28), cmap=cmap, vmin=vmin, vmax=vmax)
            else:
                ax.axis("off")
            if j == 0:
                ax.set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
            if i == 0 and col_titles is not None and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=7)
    return fig


def adversarial_examples_figure(examples: dict[str, dict], k: int = 6) -> Figure | None:
    """For each model's `adversarial.lbfgs_examples` output, ``k`` successful examples in three
    rows: original, adversarial, difference ×5 (around grey). None if no attack succeeded."""
    rows, titles = [], []
    for name, ex in examples.items():
        idx = np.flatnonzero(ex["success"])[:k]
        if idx.size == 0:
            continue
        rows += [ex["x"][idx], ex["x_adv"][idx], 0.5 + 5.0 * (ex["x_adv"][idx] - ex["x"][idx])]
        titles += [f"{name}\noriginal", "adversarial", "difference ×5"]
    return image_grid_figure(rows, titles) if rows else None


def error_curves_figure(eps: Sequence[float], curves: dict[str, Sequence[float]], *, mark: float,
                        title: str) -> Figure:
    """Test error under FGSM against ε, one line per model; a vertical line at ``mark``."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        ax.plot(eps, c, marker="o", label=name)
    ax.axvline(mark, color="gray", lw=0.5)
    ax.set_xlabel("ε (L∞, pixels in [0, 1])")
    ax.set_ylabel("test error under FGSM")
    ax.set_title(title)
    ax.legend()
    return fig


def weight_images_figure(weights: dict[str, np.ndarray]) -> Figure:
    """Each weight vector ``(784,)`` as a 28×28 image on a symmetric red-blue scale, titled by its key."""
    fig = Figure(figsize=(3 * len(weights), 3.2))
    for i, (label, w) in enumerate(weights.items()):
        ax = fig.add_subplot(1, len(weights), i + 1)
        m = np.abs(w).max() or 1.0
        ax.imshow(w.reshape(28, 28), cmap="seismic", vmin=-m, vmax=m)
        ax.set_title(label, fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
