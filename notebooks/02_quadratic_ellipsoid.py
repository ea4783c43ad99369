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
# # 02 · The quadratic network's ellipsoid
#
# Gilmer et al. 2018, §4. The quadratic network $\hat y(x) = w \sum_j (Wx)_j^2 + b$ has the decision
# boundary $\sum_i \alpha_i z_i^2 = 1$ in the eigenbasis $z = V^\top x$ of $W^\top W$, with
# $\alpha_i = w s_i^2 / (-b)$: an ellipsoid with semi-axes $1/\sqrt{\alpha_i}$. It makes an error on
# the inner sphere iff some $\alpha_i > 1$ and on the outer sphere iff some $\alpha_i < 1/R^2$, so it is
# **perfect iff every $\alpha_i \in [1/R^2, 1]$**. Its error rate on each sphere is a weighted
# $\chi^2$ tail probability, which `theory` computes three ways: the paper's CLT estimate
# (Prop. 4.1), exactly (`exact_error_rate`), and by importance-sampled Monte Carlo (`mc_error_rate`).
#
# This notebook trains one on online data and watches the $\alpha_i$ move into the perfect band,
# compares the three estimates with the error rate measured on the network itself, and draws the
# ellipsoid against the two spheres.

# %% tags=["parameters"]
SIZE = "small"   # "small": d = 20, h = 40, 3000 steps (well under a minute); "full": the paper's d = 500, h = 1000, 10^6 steps (hours on CPU)
OUT_DIR = "../runs/notebooks/02_quadratic_ellipsoid"
SEED = 0

# %%
import json
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

import spheres
import theory
from spheres.sphere.train import OnlineData, train, variables_of

SIZES = {
    # measure_every: steps between snapshots whose network error rate is measured (a multiple of chunk)
    "small": dict(d=20, hidden=40, lr=1e-3, steps=3000, chunk=250, measure_every=250,
                  eval_n=10_000, mc_n=5_000),
    "full": dict(d=500, hidden=1000, lr=1e-4, steps=1_000_000, chunk=1000, measure_every=50_000,
                 eval_n=1_000_000, mc_n=100_000),
}
P = SIZES[SIZE]
d, R = P["d"], 1.3
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
k_init, k_train, k_eval, k_mc = jax.random.split(jax.random.key(SEED), 4)
print(f"SIZE={SIZE}: {P}")


def save(fig, name):
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.show()


def alphas_of(params):
    """Sorted alpha of a QuadraticNet, in float64 (theory warns in float32: alpha near 1 decides perfection)."""
    with jax.enable_x64(True):
        return np.asarray(theory.alphas_from_variables(jax.tree.map(lambda a: np.asarray(a, np.float64), params)))


# %% [markdown]
# ## 1. Train, recording the $\alpha$ spectrum after every chunk
#
# `on_chunk` sees the training state after each chunk of steps; we keep the (sorted) $\alpha$ of every
# chunk and the variables of every `measure_every` steps (to measure the network's error rate later).

# %%
model = spheres.QuadraticNet(hidden=P["hidden"])
state = spheres.create_train_state(model, spheres.make_optimizer("adam", P["lr"]), d, key=k_init)
alpha_track = {0: alphas_of(state.params)}
snapshots = {0: variables_of(state)}


def on_chunk(st, metrics):
    alpha_track[metrics["step"]] = alphas_of(jax.device_get(st.params))
    if metrics["step"] % P["measure_every"] == 0:
        snapshots[metrics["step"]] = variables_of(st)


state = train(state, OnlineData(k_train, 50, d, R), num_steps=P["steps"], chunk=P["chunk"],
              on_chunk=on_chunk, progress=SIZE == "full")
alpha = alpha_track[P["steps"]]
print(f"final: {float(theory.fraction_in_range(alpha, R)):.0%} of alpha in [1/R^2, 1] = [{1 / R**2:.3f}, 1]; "
      f"alpha from {alpha[0]:.4f} to {alpha[-1]:.4f}; perfect: {bool(theory.is_perfect(alpha, R))}")

# %% [markdown]
# ## 2. The perfect band and the $\alpha$ histogram over training

# %%
track_steps = np.array(sorted(alpha_track))
fraction = np.array([float(theory.fraction_in_range(alpha_track[s], R)) for s in track_steps])

fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
ax[0].axhspan(1 / R**2, 1.0, color="tab:green", alpha=0.15, label="perfect band $[1/R^2, 1]$")
shown = track_steps[np.unique(np.linspace(0, len(track_steps) - 1, 5).round().astype(int))]
for s in shown:
    ax[0].plot(np.arange(1, d + 1), alpha_track[s], ".-", label=f"step {s:,}")
ax[0].set(xlabel="index i (sorted)", ylabel="$\\alpha_i$", yscale="log",
          title="The sorted $\\alpha$ spectrum during training")
ax[0].legend(fontsize=8)
ax[1].plot(track_steps, 100 * fraction, "o-")
ax[1].set(xlabel="training step", ylabel="% of $\\alpha_i$ in $[1/R^2, 1]$", ylim=(0, 105),
          title="Fraction of the spectrum inside the perfect band")
save(fig, "alpha_band")

all_alpha = np.concatenate([alpha_track[s] for s in shown])
bins = np.geomspace(all_alpha.min() * 0.9, all_alpha.max() * 1.1, 40)
fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3), sharey=True)
for a, s in zip(axes, shown):
    a.axvspan(1 / R**2, 1.0, color="tab:green", alpha=0.15)
    a.hist(alpha_track[s], bins=bins)
    a.set(xscale="log", xlabel="$\\alpha_i$ (log scale)", title=f"step {s:,}")
    a.xaxis.set_minor_formatter(NullFormatter())
axes[0].set_ylabel("count")
fig.suptitle(f"Histogram of $\\alpha$ over training (d = {d}, h = {P['hidden']}); green: perfect band")
fig.tight_layout()
save(fig, "alpha_histograms")

# %% [markdown]
# ## 3. Error rate: CLT vs exact vs Monte Carlo vs the network itself
#
# For each measured snapshot: the paper's CLT estimate, the exact tail probability, an
# importance-sampled Monte Carlo estimate (all from $\alpha$ alone, in float64), and the error rate
# of the trained network measured on `eval_n` fresh points per sphere. The measured rate cannot go
# below about $1/n$, the exact one can (rates of exactly 0 are not drawn on the log axis: every
# $\alpha_i$ is then on the right side of the band's edge for that sphere).

# %%
rows = []
batch_logits = lambda v, xb: model.apply(v, xb, train=False)  # noqa: E731  (one object: compiled once)
for i, (step, v) in enumerate(sorted(snapshots.items())):
    a = alpha_track[step]
    # the same evaluation points for every snapshot (common random numbers: differences between
    # snapshots are the network's, not the sample's)
    measured = spheres.two_sphere_error_rates(batch_logits, v, key=k_eval, d=d, R=R, n=P["eval_n"],
                                              progress=False)
    row = {"step": step}
    for sphere in ("inner", "outer"):
        with jax.enable_x64(True):
            mc = theory.mc_error_rate(a, sphere=sphere, R=R, n=P["mc_n"], importance=True,
                                      key=jax.random.fold_in(k_mc, 2 * i + (sphere == "outer")))
            clt = float(theory.clt_error_rate(a, sphere=sphere, R=R))
            exact = float(theory.exact_error_rate(a, sphere=sphere, R=R))
        row[sphere] = {"clt": clt, "exact": exact, "mc": mc.rate, "mc_lower": mc.lower, "mc_upper": mc.upper,
                       "measured": measured[sphere].rate, "measured_upper": measured[sphere].upper,
                       "measured_errors": measured[sphere].errors, "n": measured[sphere].n}
    rows.append(row)
    print(f"step {step:>7,}: " + "; ".join(
        f"{s} CLT {row[s]['clt']:.2e} exact {row[s]['exact']:.2e} MC {row[s]['mc']:.2e} "
        f"network {row[s]['measured_errors']}/{row[s]['n']:,}" for s in ("inner", "outer")))

pos = lambda v: np.where(np.asarray(v) > 0, v, np.nan)  # noqa: E731  (zeros off the log axis)
steps = np.array([r["step"] for r in rows])
fig, ax = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
for a, sphere in zip(ax, ("inner", "outer")):
    get = lambda k: np.array([r[sphere][k] for r in rows])  # noqa: E731
    a.plot(steps, pos(get("exact")), "k-", lw=2, label="exact")
    a.plot(steps, pos(get("clt")), "--", label="CLT (Prop. 4.1)")
    a.errorbar(steps, pos(get("mc")), yerr=[get("mc") - get("mc_lower"), get("mc_upper") - get("mc")],
               fmt="o", ms=4, capsize=2, label=f"importance MC ({P['mc_n']:,} draws)")
    a.plot(steps, pos(get("measured")), "s", mfc="none", ms=7, label=f"network, {P['eval_n']:,} points")
    a.plot(steps, get("measured_upper"), "v", color="gray", ms=4, label="network: 95% upper bound")
    a.set(yscale="log", xlabel="training step", title=f"{sphere} sphere")
ax[0].set_ylabel("error rate")
ax[1].legend(fontsize=8)
fig.suptitle("Quadratic network: error rate from $\\alpha$ (theory) and measured on the network")
save(fig, "error_rates")

# %% [markdown]
# ## 4. The ellipsoid against the spheres
#
# Left: the exact 2-D slice through the directions of the largest and smallest $\alpha$
# (`theory.worst_case_points` gives the worst-case points along them). In that plane the boundary is
# the ellipse with semi-axes $1/\sqrt{\alpha_{max}}$ and $1/\sqrt{\alpha_{min}}$; the contour is the
# zero level set of the *network's* logit on a grid of the plane, which must fall on the ellipse.
# Right: a 3-D picture with the semi-axes of the largest, a middle and the smallest $\alpha$.

# %%
with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), jax.device_get(state.params))
    worst = theory.worst_case_points_from_variables(params64, R=R)
    semi = np.asarray(theory.ellipsoid_semi_axes(alpha))
u = np.asarray(worst.inner_x) / np.linalg.norm(worst.inner_x)     # direction of alpha_max
v = np.asarray(worst.outer_x) / np.linalg.norm(worst.outer_x)     # direction of alpha_min
lim = 1.25 * min(max(R, semi[0]), 2 * R)
g = np.linspace(-lim, lim, 301)
A, B = np.meshgrid(g, g)
plane = (A.reshape(-1, 1) * u + B.reshape(-1, 1) * v).astype(np.float32)
logits = np.asarray(model.apply(variables_of(state), plane, train=False)).reshape(A.shape)

t = np.linspace(0, 2 * np.pi, 400)
fig = plt.figure(figsize=(13, 5.5))
ax = fig.add_subplot(1, 2, 1)
ax.contourf(A, B, logits > 0, levels=[-0.5, 0.5, 1.5], colors=["tab:blue", "tab:orange"], alpha=0.12)
ax.contour(A, B, logits, levels=[0.0], colors="k", linewidths=2.5)
ax.plot(semi[-1] * np.cos(t), semi[0] * np.sin(t), "r--", lw=1.5,
        label=f"ellipse from $\\alpha$: semi-axes {semi[-1]:.3f}, {semi[0]:.3f}")
ax.plot(np.cos(t), np.sin(t), "tab:blue", label="inner sphere (r = 1)")
ax.plot(R * np.cos(t), R * np.sin(t), "tab:orange", label=f"outer sphere (r = {R})")
ax.plot([], [], "k", lw=2.5, label="network's boundary (logit = 0)")
ax.set(aspect="equal", xlabel="direction of $\\alpha_{max}$", ylabel="direction of $\\alpha_{min}$",
       title="Slice through the extreme axes")
ax.legend(fontsize=8, loc="lower left")

ax3 = fig.add_subplot(1, 2, 2, projection="3d")
p, q = np.meshgrid(np.linspace(0, np.pi, 30), np.linspace(0, 2 * np.pi, 40))
unit = np.stack([np.sin(p) * np.cos(q), np.sin(p) * np.sin(q), np.cos(p)])
axes3 = semi[[-1, d // 2, 0]]  # smallest, middle, largest alpha -> largest, middle, smallest semi-axis
for radius, color in ((1.0, "tab:blue"), (R, "tab:orange")):
    ax3.plot_wireframe(*(radius * unit), color=color, alpha=0.25, linewidth=0.5)
ax3.plot_surface(*(np.minimum(axes3, 3 * R)[:, None, None] * unit), color="tab:red", alpha=0.35)
ax3.set(xlabel="$z_{\\alpha_{max}}$", ylabel="$z_{\\alpha_{mid}}$", zlabel="$z_{\\alpha_{min}}$",
        title="Ellipsoid (red) between the spheres")
ax3.plot([], [], color="tab:blue", label="inner sphere")
ax3.plot([], [], color="tab:orange", label="outer sphere")
ax3.plot([], [], color="tab:red", label="decision boundary")
ax3.legend(fontsize=8)
save(fig, "ellipsoid")

# slice check: on the ellipse's axis points the network's logit is ~0
on_axes = np.stack([semi[-1] * u, semi[0] * v]).astype(np.float32)
axis_logits = np.asarray(model.apply(variables_of(state), on_axes, train=False))
print(f"network logit at the ellipse's semi-axis ends: {axis_logits} (logit scale -b = {-float(params64['b']):.3f})")

# %% [markdown]
# Numbers for the record (and for the notebook test).

# %%
summary = {"size": SIZE, "d": d, "hidden": P["hidden"], "steps": P["steps"],
           "final_fraction_in_range": float(theory.fraction_in_range(alpha, R)),
           "final_perfect": bool(theory.is_perfect(alpha, R)),
           "alpha_min": float(alpha[0]), "alpha_max": float(alpha[-1]),
           "axis_logits_over_b": (axis_logits / -float(params64["b"])).tolist(),
           "rows": rows}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print({k: v for k, v in summary.items() if k != "rows"})
