# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Error rate versus distance to the nearest error
#
# The central figure of Gilmer et al. 2018 (v1 Figure 4). For a model on the two-sphere data let
# $E$ be its misclassified inner-sphere points, $\mu(E)$ their measure (the error rate) and
# $d(E) = \mathbb{E}_{x}\, d(x, E)$ the mean L2 distance from a random inner point to the nearest
# error. **Theorem 5.1**: by the isoperimetric inequality a spherical cap has the smallest
# $\varepsilon$-expansion of all sets of its measure, so $d(E) \le d(\text{cap of measure } \mu(E))
# \approx \Phi^{-1}(1-\mu)/\sqrt{d}$. Any model with a small but nonzero error rate therefore has
# errors close to most points; to push $d(E)$ up linearly, $\mu(E)$ must fall exponentially.
#
# The numbers come from the `sphere-error-vs-distance` experiment (the same function as
# `spheres run sphere-error-vs-distance`): models × training-set sizes, each measured at several
# steps during training ($\mu$ on fresh inner points with an exact interval, $d(E)$ by the
# nearest-error manifold attack), plus *measured caps*: error sets that are actual caps of known
# measure, attacked the same way, which checks the attack as a distance estimator.
#
# Give saved run directories in `RUN_DIRS` (finished or still running: unfinished runs are read from
# their sub-runs' metrics); with none, the notebook makes one fresh run at the size `SIZE` selects.

# %% tags=["parameters"]
SIZE = "small"   # "small": d = 50, two small models, one training-set size (under a minute); "full": the paper's preset (d = 500, 3 models x 5 sizes, 10^6 steps: days on CPU)
RUN_DIRS = []    # e.g. ["../runs/evd-medium"]: directories written by `spheres run sphere-error-vs-distance`
OUT_DIR = "../runs/notebooks/03_error_vs_distance"
SEED = 0

# %%
import json
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

import theory
from spheres.experiments import get, make_config, run_experiment
from spheres.results import load_run

EXPERIMENT = "sphere-error-vs-distance"
SIZES = {
    # a preset of the experiment plus overrides (see `spheres describe sphere-error-vs-distance`)
    "small": ("quick", dict(d=50, models=("quad.w1000", "relu.w1000.2"), paper_sizes=False, hidden=100,
                            widths=(64, 64), train_sizes=(1000,), steps=750, chunk_steps=125,
                            ckpt_every=750, measure_every=125, measure_eval=10_000, measure_attack=40,
                            attack_steps=300, cap_mus=(0.1, 1e-2, 1e-3))),
    "full": ("paper", {}),
}
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)


def save(fig, name):
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.show()


# %% [markdown]
# ## 1. The runs
#
# A fresh run goes to `OUT_DIR/run-SIZE`; running the notebook again resumes it (finished sub-runs
# are not redone).

# %%
if not RUN_DIRS:
    preset, overrides = SIZES[SIZE]
    cfg = make_config(EXPERIMENT, preset, overrides, seed=SEED)
    print(f"fresh run, preset {preset!r} ({get(EXPERIMENT).config_cls.COST.get(preset, '?')} at the preset's size)")
    run_experiment(EXPERIMENT, config=cfg, out_dir=out / f"run-{SIZE}")
    RUN_DIRS = [out / f"run-{SIZE}"]

runs = []
for path in map(Path, RUN_DIRS):
    run = load_run(path)
    if run["config"]["experiment"] != EXPERIMENT:
        raise ValueError(f"{path} holds a {run['config']['experiment']!r} run, not {EXPERIMENT!r}")
    if run["summary"] is not None:
        s = run["summary"]
        points, caps, d = s["points"], s["caps"], s["d"]
    else:  # still running: read the measurements logged so far by each model x size sub-run
        d, points, caps = run["config"]["config"]["d"], [], []
        for sub in sorted(p for p in path.iterdir() if (p / "config.json").exists()):
            model, n = sub.name.rsplit("-N", 1)
            points += [{"model": model, "train_size": int(n), "step": m["step"], **m["measure"]}
                       for m in load_run(sub)["metrics"] if "measure" in m]
    runs.append({"path": str(path), "d": d, "points": points, "caps": caps, "finished": run["summary"] is not None})
    print(f"{path}: d = {d}, {len(points)} measurements, {len(caps)} caps, "
          f"{'finished' if run['summary'] is not None else 'still running'}")

# %% [markdown]
# ## 2. The figure
#
# Every measurement with at least one error found among the inner-sphere points is a marker (error
# bar: the exact 95% interval of $\mu$); its $d(E)$ counts 0 for points already misclassified and the
# attack's distance otherwise. Measurements with no error found have no $\mu$ to place them at
# (only an upper bound) and are listed, not drawn.

# %%
markers = "os^vD<>p"
for run in runs:
    d = run["d"]
    fig, ax = plt.subplots(figsize=(8, 5))
    mus = np.logspace(-8, np.log10(0.5), 200)
    with jax.enable_x64(True):
        ax.plot(mus, theory.cap_distance_bound(mus, d), "k-", label="Theorem 5.1: cap of measure $\\mu$ (exact)")
        ax.plot(mus, np.asarray(theory.asymptotic_distance_bound(mus, d)), "k--",
                label="asymptotic $\\Phi^{-1}(1-\\mu)/\\sqrt{d}$")
    if run["caps"]:
        ax.plot([c["mu"] for c in run["caps"]], [c["d_E_attack"] for c in run["caps"]], "D", ms=8,
                color="gray", mfc="none", label="measured caps (same attack)")
    models = sorted({p["model"] for p in run["points"]})
    sizes = sorted({p["train_size"] for p in run["points"]})
    for ci, model in enumerate(models):
        for si, n in enumerate(sizes):
            pts = [p for p in run["points"] if p["model"] == model and p["train_size"] == n and p["mu_errors"] > 0]
            if not pts:
                continue
            mu = np.array([p["mu"] for p in pts])
            xerr = np.array([mu - [p["mu_lower"] for p in pts], [p["mu_upper"] for p in pts] - mu])
            ax.errorbar(mu, [p["d_E"] for p in pts], xerr=xerr, fmt=markers[si % len(markers)], ms=6,
                        color=f"C{ci}", alpha=0.85, capsize=2, label=f"{model}, N = {n:,}")
    ax.set(xscale="log", ylim=(0, None), xlabel="$\\mu(E)$: inner-sphere error rate",
           ylabel="$d(E)$: mean L2 distance to the nearest error",
           title=f"Error rate vs distance to the nearest error (d = {d})")
    ax.legend(fontsize=8)
    save(fig, f"error_vs_distance_d{d}")
    for p in run["points"]:
        if p["mu_errors"] == 0:
            print(f"not drawn: {p['model']} N={p['train_size']:,} step {p['step']:,}: 0 errors in "
                  f"{p['mu_n']:,} (mu <= {p['mu_upper']:.2g}), d(E) from the attack {p['d_E']:.4f}")

# %% [markdown]
# ## 3. How close to the bound, and is the attack a good distance estimator?
#
# Left: $d(E)$ divided by the bound at the measured $\mu$, over training. Theorem 5.1 says the true
# ratio is at most 1; the attack's $d(E)$ is an estimate from above (it may miss closer errors), so a
# ratio near 1 means the model's errors are spread about as badly as a cap, and one well below 1 means
# errors closer than a cap would put them. Right: on actual caps the attack's $d(E)$ against the exact
# mean distance of the same sampled points and the theory value for the cap's measure.

# %%
ratios = []
for run in runs:
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
    for ci, model in enumerate(sorted({p["model"] for p in run["points"]})):
        for si, n in enumerate(sorted({p["train_size"] for p in run["points"]})):
            pts = [p for p in run["points"] if p["model"] == model and p["train_size"] == n
                   and 0 < p["mu"] <= 0.5]
            if not pts:
                continue
            with jax.enable_x64(True):
                bound = theory.cap_distance_bound(np.array([p["mu"] for p in pts]), run["d"])
            r = np.array([p["d_E"] for p in pts]) / bound
            ratios += [{"model": model, "train_size": n, "step": p["step"], "mu": p["mu"], "ratio": float(v)}
                       for p, v in zip(pts, r)]
            ax[0].plot([p["step"] for p in pts], r, markers[si % len(markers)] + "-", color=f"C{ci}",
                       label=f"{model}, N = {n:,}")
    ax[0].axhline(1.0, color="k", lw=0.8)
    ax[0].set(xlabel="training step", ylabel="$d(E)$ / cap bound at $\\mu(E)$",
              title=f"Distance relative to Theorem 5.1's bound (d = {run['d']})")
    ax[0].legend(fontsize=8)
    if run["caps"]:
        caps = run["caps"]
        x = np.arange(len(caps))
        ax[1].bar(x - 0.25, [c["d_E_attack"] for c in caps], 0.25, label="attack")
        ax[1].bar(x, [c["d_E_exact_same_points"] for c in caps], 0.25, label="exact, same points")
        ax[1].bar(x + 0.25, [c["d_E_theory"] for c in caps], 0.25, label="theory (cap_distance_bound)")
        ax[1].set_xticks(x, [f"$\\mu$ = {c['mu']:g}" for c in caps])
        ax[1].set(ylabel="$d(E)$", title="Measured caps: attack vs exact")
        ax[1].legend(fontsize=8)
    save(fig, f"bound_ratio_and_caps_d{run['d']}")

# %% [markdown]
# Numbers for the record (and for the notebook test).

# %%
summary = {"size": SIZE, "runs": [{k: r[k] for k in ("path", "d", "finished")} | {
    "n_points": len(r["points"]), "n_points_with_errors": sum(p["mu_errors"] > 0 for p in r["points"]),
    "caps": r["caps"], "points": r["points"]} for r in runs], "ratios": ratios}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps([{k: v for k, v in r.items() if k not in ("caps", "points")} for r in summary["runs"]], indent=1))
