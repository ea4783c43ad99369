"""Figures shared by several experiments. Each returns a `matplotlib.figure.Figure`.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot, and nothing here
selects a backend: a notebook's inline backend and a batch run's file output both work, and the
caller decides where a figure goes (`spheres.results.RunDir.save_figure` writes a PNG).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def distance_histogram(arrays: dict, title: str) -> Figure:
    """Histogram of the nearest-error distances of `spheres.sphere.manifold.manifold_analysis`:
    on-manifold (sphere attack) and off-manifold (nearest L2 error), found points only."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    on = arrays["on_manifold_distance"][arrays["on_manifold_found"]]
    off = arrays["off_manifold_distance"][arrays["off_manifold_found"]]
    if on.size:
        ax.hist(on, bins=40, alpha=0.6, label=f"on-manifold (sphere attack), n={on.size}")
    if off.size:
        ax.hist(off, bins=40, alpha=0.6, label=f"off-manifold (nearest L2), n={off.size}")
    ax.set(xlabel="L2 distance to the nearest error found", ylabel="number of test points", title=title)
    if on.size or off.size:
        ax.legend()
    return fig


def trajectory_figure(tracked: list[dict], title: str) -> Figure | None:
    """The quadratic net over training: % of α in [1/R², 1] (left) and log10 error rates (right):
    exact and CLT per sphere, measured rates (a 95% upper bound ▽ where none was found), and the
    steps at which the net is perfect shaded. ``tracked``: metric records with the keys of
    `spheres.sphere.quadratic.quadratic_theory` (and ``measured_*`` when measured). None if empty."""
    if not tracked:
        return None
    steps = [m["step"] for m in tracked]
    fig = Figure(figsize=(11, 4))
    ax = fig.subplots(1, 2)
    ax[0].plot(steps, [100 * m["alpha_fraction_in_range"] for m in tracked])
    ax[0].set(xlabel="training step", ylabel="% of alpha in [1/R², 1]", title=title)
    for s in ("inner", "outer"):  # -inf (a perfect solution: exactly zero error) leaves a gap
        for kind, ls in (("exact", "-"), ("clt", "--")):
            y = np.array([m[f"log10_{kind}_{s}"] for m in tracked], float)
            ax[1].plot(steps, np.where(np.isfinite(y), y, np.nan), ls,
                       label=f"{'exact' if kind == 'exact' else 'CLT'} {s}")
    bound_label = "0 errors measured: 95% upper bound"
    for s, mk in (("inner", "o"), ("outer", "s")):
        meas = [m for m in tracked if m.get(f"measured_{s}_n")]
        if meas:
            e = np.array([m[f"measured_{s}_errors"] for m in meas], float)
            n = np.array([m[f"measured_{s}_n"] for m in meas], float)
            st = np.array([m["step"] for m in meas])
            hit = e > 0
            ax[1].plot(st[hit], np.log10(e[hit] / n[hit]), mk, mfc="none", color="k",
                       label=f"measured {s}" if hit.any() else None)
            ax[1].plot(st[~hit], np.log10(1 - 0.05 ** (1 / n[~hit])), "v", color="gray", ms=4,
                       label=bound_label if (~hit).any() else None)
            bound_label = None if (~hit).any() else bound_label
    perfect = np.array([bool(m.get("perfect")) for m in tracked])
    if perfect.any():
        ax[1].fill_between(steps, 0, 1, where=perfect, step="mid", color="green", alpha=0.12,
                           transform=ax[1].get_xaxis_transform(), label="perfect: error exactly 0")
    ax[1].set(xlabel="training step", ylabel="log10 error rate", title="Error rate over training")
    ax[1].legend(fontsize=8)
    return fig
