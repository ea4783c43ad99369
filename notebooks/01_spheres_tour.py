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
# # 01 · Adversarial spheres: a tour
#
# Gilmer et al. 2018, "Adversarial Spheres". Two concentric spheres in $\mathbb{R}^d$: the inner one
# (radius 1, label 0) and the outer one (radius $R = 1.3$, label 1). This notebook
#
# 1. samples the data and looks at what high dimension does to it,
# 2. trains a small ReLU network (Dense → BatchNorm → ReLU, one logit) on online data,
# 3. runs the manifold attack (`attacks.sphere_pgd`, "nearest error": stay on the sphere, stop at
#    the first misclassification) and the off-manifold one (`attacks.nearest_error_l2`),
# 4. puts the measured (error rate, mean distance to the nearest error) pairs, taken at several
#    points during training, beside Theorem 5.1's bound: for an error set $E$ of measure $\mu$ on the
#    inner sphere, $d(E) \le d(\text{cap of measure } \mu) \approx \Phi^{-1}(1-\mu)/\sqrt{d}$.
#
# Everything here is a call into `spheres`, `attacks` and `theory`; the notebook only wires and plots.

# %% tags=["parameters"]
SIZE = "small"   # "small": d = 50, about a minute on a laptop CPU; "full": the paper's d = 500, 2 x 1000 ReLU (hours on CPU)
OUT_DIR = "../runs/notebooks/01_spheres_tour"   # figures (.png) and summary.json go here
SEED = 0

# %%
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import attacks
import spheres
import theory
from spheres.sphere.train import OnlineData, train, variables_of

SIZES = {
    # d, hidden widths, Adam learning rate, training steps (a multiple of `chunk`), steps between the
    # snapshots measured later (a multiple of `chunk`), evaluation points per sphere (per snapshot,
    # final model), attacked points per sphere, attack settings
    "small": dict(d=50, widths=(128, 128), lr=1e-3, steps=1000, chunk=125, measure_every=125,
                  eval_n=10_000, final_eval_n=50_000, n_attack=100, attack_steps=300, step_size=0.02),
    "full": dict(d=500, widths=(1000, 1000), lr=1e-4, steps=1_000_000, chunk=1000, measure_every=50_000,
                 eval_n=1_000_000, final_eval_n=10_000_000, n_attack=500, attack_steps=2000, step_size=0.005),
}
P = SIZES[SIZE]
d, R = P["d"], 1.3
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
k_data, k_init, k_train, k_eval, k_attack = jax.random.split(jax.random.key(SEED), 5)
print(f"SIZE={SIZE}: {P}; devices: {jax.devices()}")


def save(fig, name):
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.show()


# %% [markdown]
# ## 1. The data
#
# `spheres.sample_two_spheres` draws a balanced sample, $x = r\,z/\lVert z\rVert$ with
# $z \sim N(0, I_d)$. The norms separate the classes perfectly, yet any 2-D projection of the
# data is a blur: in high dimension almost all of a sphere's mass sits near every equator, and two
# random points of the unit sphere are almost exactly $\sqrt{2}$ apart.

# %%
x, y = spheres.sample_two_spheres(k_data, 2000, d, R)
x, y = np.asarray(x), np.asarray(y)
inner = x[y == 0]
pair_dist = np.linalg.norm(inner[: len(inner) // 2] - inner[len(inner) // 2:], axis=1)

fig, ax = plt.subplots(1, 3, figsize=(15, 4))
for label, name in ((0, "inner (r = 1)"), (1, f"outer (r = {R})")):
    ax[0].scatter(x[y == label, 0], x[y == label, 1], s=4, alpha=0.5, label=name)
ax[0].set(xlabel="$x_1$", ylabel="$x_2$", title=f"Two coordinates of the data (d = {d})")
ax[0].legend()
ax[1].hist(np.linalg.norm(x, axis=1), bins=60)
ax[1].set(xlabel="$\\|x\\|_2$", ylabel="count", title="Norms: the label is the radius")
ax[2].hist(pair_dist, bins=40)
ax[2].axvline(np.sqrt(2), color="k", ls="--", label="$\\sqrt{2}$")
ax[2].set(xlabel="$\\|x - x'\\|_2$ (inner sphere)", ylabel="count",
          title="Distance between two random inner points")
ax[2].legend()
save(fig, "data")

# %% [markdown]
# ## 2. Train a ReLU network on online data
#
# `spheres.sphere.train.train` runs chunks of `chunk` steps inside one jitted `lax.scan`; the `on_chunk`
# hook receives the state after every chunk: we log its metrics and keep the variables of every
# `measure_every` steps to measure later.

# %%
model = spheres.SphereMLP(features=P["widths"])
state = spheres.create_train_state(model, spheres.make_optimizer("adam", P["lr"]), d, key=k_init)
log, snapshots = [], []


def on_chunk(st, metrics):
    log.append(metrics)
    if metrics["step"] % P["measure_every"] == 0:
        snapshots.append((metrics["step"], variables_of(st)))


state = train(state, OnlineData(k_train, 50, d, R), num_steps=P["steps"], chunk=P["chunk"],
              on_chunk=on_chunk, progress=SIZE == "full")
variables = variables_of(state)
print(f"{len(snapshots)} snapshots; final training loss {log[-1]['loss']:.4g}")

# %% [markdown]
# The error rate of each snapshot, measured on fresh points of each sphere
# (`spheres.two_sphere_error_rates`: streaming, exact Clopper–Pearson intervals). One batch-logit
# function object is reused so that evaluation compiles once.

# %%
batch_logits = lambda v, xb: model.apply(v, xb, train=False)  # noqa: E731  (one object: compiled once)
rates = [spheres.two_sphere_error_rates(batch_logits, v, key=k_eval, d=d, R=R, n=P["eval_n"],
                                        progress=False) for _, v in snapshots]
final = spheres.two_sphere_error_rates(batch_logits, variables, key=jax.random.fold_in(k_eval, 1),
                                       d=d, R=R, n=P["final_eval_n"], progress=False)
for sphere in ("inner", "outer"):
    r = final[sphere]
    print(f"final {sphere}: {r.errors} errors in {r.n:,} (rate {r.rate:.3g}, 95% upper {r.upper:.3g})")

steps = np.array([s for s, _ in snapshots])
fig, ax = plt.subplots(1, 2, figsize=(12, 4))
ax[0].plot([m["step"] for m in log], [m["loss"] for m in log], "o-")
ax[0].set(yscale="log", xlabel="training step", ylabel="mean training loss (per chunk)",
          title="Training loss")
for sphere in ("inner", "outer"):
    rate = np.array([r[sphere].rate for r in rates])
    upper = np.array([r[sphere].upper for r in rates])
    line, = ax[1].plot(steps, np.where(rate > 0, rate, np.nan), "o-", label=f"{sphere}: measured")
    ax[1].plot(steps, upper, ":", color=line.get_color(), label=f"{sphere}: 95% upper bound")
ax[1].set(yscale="log", xlabel="training step", ylabel="error rate",
          title=f"Error rate per sphere ({P['eval_n']:,} points each)")
ax[1].legend()
save(fig, "training")

# %% [markdown]
# ## 3. The manifold attack and the off-manifold nearest error
#
# `attacks.sphere_pgd(mode="nearest")` takes normalised gradient steps that stay on the starting
# sphere and stops at the first error, then bisects along the great circle back towards the start;
# `distance` is $\lVert\hat x - x\rVert_2$. `attacks.nearest_error_l2` drops the sphere constraint
# (DeepFool, then rotate-and-bisect), so its errors can be much closer and lie off the data manifold.
# Attacks take the per-example logit function and, with `params=`, compile once for all snapshots.

# %%
logit = lambda v, xi: model.apply(v, xi[None], train=False)[0]  # noqa: E731  per-example, eval mode
attack_kw = dict(step_size=P["step_size"], num_steps=P["attack_steps"], mode="nearest")
x_att = {
    "inner": spheres.sample_sphere(jax.random.fold_in(k_attack, 0), P["n_attack"], d, 1.0),
    "outer": spheres.sample_sphere(jax.random.fold_in(k_attack, 1), P["n_attack"], d, R),
}
y_att = {"inner": jnp.zeros(P["n_attack"], jnp.int32), "outer": jnp.ones(P["n_attack"], jnp.int32)}
on_manifold = {s: attacks.sphere_pgd(logit, x_att[s], y_att[s], params=variables, **attack_kw)
               for s in ("inner", "outer")}
off_manifold = {s: attacks.nearest_error_l2(logit, x_att[s], y_att[s], max_radius=1.0, params=variables)
                for s in ("inner", "outer")}

radius_error = {s: float(jnp.max(jnp.abs(jnp.linalg.norm(on_manifold[s].x_adv, axis=1)
                                        - (1.0 if s == "inner" else R)))) for s in on_manifold}
fig, ax = plt.subplots(1, 2, figsize=(12, 4))
for i, s in enumerate(("inner", "outer")):
    on, off = on_manifold[s], off_manifold[s]
    ax[i].hist(np.asarray(on.distance[on.success]), bins=25, alpha=0.7,
               label=f"on the sphere (sphere_pgd), {float(on.success.mean()):.0%} found")
    ax[i].hist(np.asarray(off.distance[off.success]), bins=25, alpha=0.7,
               label=f"off the sphere (nearest_error_l2), {float(off.success.mean()):.0%} found")
    ax[i].set(xlabel="$\\|\\hat x - x\\|_2$", ylabel="count",
              title=f"Distance to the nearest error found, {s} sphere")
    ax[i].legend(fontsize=8)
    print(f"{s}: on-manifold mean {float(on.distance[on.success].mean()):.4f} "
          f"(max | ||x_adv|| - r | = {radius_error[s]:.1e}); off-manifold mean "
          f"{float(off.distance[off.success].mean()):.4f}")
save(fig, "attack_distances")

# %% [markdown]
# ## 4. Error rate versus distance: Theorem 5.1
#
# For each snapshot: $\mu$ = the measured inner-sphere error rate, $d(E)$ = the mean on-manifold
# distance to the nearest error found from random inner points (an estimate from above: the attack
# may miss closer errors). The curves are the exact mean distance to a spherical cap of measure $\mu$
# (`theory.cap_distance_bound`, the bound) and the paper's asymptotic form
# $\Phi^{-1}(1-\mu)/\sqrt{d}$ (`theory.asymptotic_distance_bound`). Snapshots with no measured error
# have no $\mu$ to place them at and are left out.

# %%
points = []
x_in, y_in = x_att["inner"], y_att["inner"]
for (step, v), r in zip(snapshots, rates):
    if r["inner"].errors == 0:
        continue
    res = attacks.sphere_pgd(logit, x_in, y_in, params=v, **attack_kw)
    ok = np.asarray(res.success)
    points.append(dict(step=step, mu=r["inner"].rate, mu_lower=r["inner"].lower, mu_upper=r["inner"].upper,
                       distance=float(np.asarray(res.distance)[ok].mean()) if ok.any() else float("nan"),
                       found=float(ok.mean()),
                       bound=float(theory.cap_distance_bound(r["inner"].rate, d))))
for p in points:
    print(f"step {p['step']:>7}: mu = {p['mu']:.3g}, d(E) <= {p['distance']:.4f} "
          f"(errors found from {p['found']:.0%} of the points), cap bound {p['bound']:.4f}")

mu_grid = np.logspace(-8, np.log10(0.5), 80)
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.plot(mu_grid, theory.cap_distance_bound(mu_grid, d), "k-", label="cap of measure $\\mu$ (exact bound)")
ax.plot(mu_grid, np.asarray(theory.asymptotic_distance_bound(mu_grid, d)), "k--",
        label="$\\Phi^{-1}(1-\\mu)/\\sqrt{d}$ (asymptotic)")
if points:
    mus = np.array([p["mu"] for p in points])
    xerr = np.array([[p["mu"] - p["mu_lower"] for p in points], [p["mu_upper"] - p["mu"] for p in points]])
    sc = ax.scatter(mus, [p["distance"] for p in points], c=[p["step"] for p in points], cmap="viridis",
                    zorder=3, label=f"ReLU {'x'.join(map(str, P['widths']))} during training")
    ax.errorbar(mus, [p["distance"] for p in points], xerr=xerr, fmt="none", ecolor="gray", zorder=2)
    fig.colorbar(sc, ax=ax, label="training step")
ax.set(xscale="log", xlabel="inner-sphere error rate $\\mu(E)$",
       ylabel="mean distance to the nearest error $d(E)$",
       title=f"Error rate vs distance to the nearest error (d = {d})")
ax.legend(fontsize=8)
save(fig, "distance_vs_bound")

# %% [markdown]
# Numbers for the record (and for the notebook test, which reads `summary.json`).

# %%
summary = {
    "size": SIZE, "d": d, "widths": list(P["widths"]), "steps": P["steps"],
    "final_error": {s: final[s].as_dict() for s in final},
    "on_manifold": {s: {"found": float(on_manifold[s].success.mean()),
                        "mean_distance": float(on_manifold[s].distance[on_manifold[s].success].mean()),
                        "max_radius_error": radius_error[s]} for s in on_manifold},
    "off_manifold": {s: {"found": float(off_manifold[s].success.mean()),
                         "mean_distance": float(off_manifold[s].distance[off_manifold[s].success].mean())}
                     for s in off_manifold},
    "distance_vs_bound": points,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary["on_manifold"], indent=1))
