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
# # 04 · Szegedy et al. 2013: L-BFGS adversarial examples, transfer, units, Lipschitz bounds
#
# "Intriguing properties of neural networks" on image data. This notebook
#
# 1. trains a few of the paper's models (`spheres.images.models.paper_model`: softmax regression
#    FC10(λ) with weight decay λ, the sigmoid MLP FC100-100-10, a small conv net),
# 2. makes **targeted box-constrained L-BFGS** adversarial examples (`attacks.lbfgs` with the search
#    over the penalty c, driven by `spheres.images.adversarial.lbfgs_examples`) and shows them with
#    their distortion $\sqrt{\sum_i (x'_i - x_i)^2 / 784}$,
# 3. evaluates every model on every model's examples (the **transfer matrix**, Table 2), beside
#    Gaussian noise of comparable size,
# 4. compares test images that maximise a **single hidden unit** with those maximising a **random
#    direction** of the same layer (§3),
# 5. computes the **per-layer upper Lipschitz bounds** (§4.3: `theory.dense_lipschitz`,
#    `theory.conv_lipschitz`) and their product, beside the largest input-Jacobian norm measured
#    on test points (a lower bound).
#
# The paper used MNIST; this notebook runs on Fashion-MNIST (by default the 6,000 + 1,000-image
# sample that ships with the package), so the numbers are not the paper's. Set `DATASET = "mnist"`
# and `DATA_DIR` to MNIST's IDX files to compare.

# %% tags=["parameters"]
SIZE = "small"   # "small": 2000 training images, a few epochs, 16 attacks per model (about a minute); "full": all 60k images, the paper's Table 1 models (hours on CPU)
DATASET = "fashion_mnist_sample"   # the sample shipped with the package; "fashion_mnist" or "mnist": the full set
DATA_DIR = None   # full sets: None = $SPHERES_DATA, then Debian's /usr/share/datasets/fashion-mnist
OUT_DIR = "../runs/notebooks/04_szegedy_lbfgs"
SEED = 0

# %%
import json
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

from spheres.experiments import szegedy_table1
from spheres.images import adversarial
from spheres.images import data as idata
from spheres.images import models as im
from spheres.images import train as itrain
from spheres.images.evaluate import evaluate, label_purity
from spheres.keys import named_keys, stream_key

SIZES = {
    # models: trained; attack_models: get L-BFGS examples (rows of the transfer matrix);
    # conv_epochs = 0 keeps the conv net at its initialisation (its bounds are then of an untrained net)
    "small": dict(n_train=2000, n_test=500, epochs=4, pretrain_epochs=2, batch=50, lr=2e-3,
                  models=("FC10(1e-4)", "FC10(1)", "FC100-100-10"), attack_models=("FC10(1e-4)", "FC10(1)"),
                  n_attack=16, c_rounds=4, lbfgs_maxiter=30, noise_sigmas=(0.1, 0.3),
                  conv_epochs=0, conv_channels=(8, 16), n_probe=32, power_iters=10,
                  units_model="FC100-100-10", n_directions=4, top_k=6, n_search=500),
    "full": dict(n_train=None, n_test=None, epochs=50, pretrain_epochs=50, batch=100, lr=1e-3,
                 models=im.SZEGEDY_TABLE1_MODELS, attack_models=im.SZEGEDY_TABLE1_MODELS,
                 n_attack=1000, c_rounds=10, lbfgs_maxiter=200, noise_sigmas=(0.1, 0.3),
                 conv_epochs=20, conv_channels=(16, 32), n_probe=1000, power_iters=50,
                 units_model="FC100-100-10", n_directions=8, top_k=8, n_search=10_000),
}
P = SIZES[SIZE]
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
keys = named_keys(SEED, ("attack", "noise", "units", "directions", "probe"))

ds = idata.take(idata.load_dataset(DATASET, DATA_DIR), P["n_train"], P["n_test"])
names = idata.CLASS_NAMES[ds.name]
print(f"SIZE={SIZE}; data: {ds.describe()}")


def save(fig, name):
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.show()


# %% [markdown]
# ## 1. Train the models
#
# `spheres.images.train.train_recipe` trains each model by its recipe (loss, Szegedy's per-layer weight decay
# $\lambda_i \sum W_i^2 / k_i$, autoencoder pre-training for AE400-10).

# %%
models = {}
for name in P["models"] + ("conv",):
    recipe = im.paper_model(name, conv_channels=P["conv_channels"])
    epochs = P["conv_epochs"] if name == "conv" else P["epochs"]
    settings = itrain.settings_for(recipe, epochs=epochs, batch=P["batch"], lr=P["lr"])
    variables = itrain.train_recipe(recipe, settings, ds.x_train, ds.y_train, key=stream_key(SEED, f"train/{name}"),
                                    pretrain_epochs=P["pretrain_epochs"])
    train_ev = evaluate(recipe.module, variables, ds.x_train, ds.y_train)
    test_ev = evaluate(recipe.module, variables, ds.x_test, ds.y_test)
    models[name] = {"recipe": recipe, "variables": variables, "train_error": train_ev.error,
                    "test_error": test_ev.error, "epochs": epochs}
    print(f"{name:>14}: {epochs} epochs, train error {train_ev.error:.1%}, test error {test_ev.error:.1%}")

# %% [markdown]
# ## 2. L-BFGS adversarial examples and their distortion
#
# For the first `n_attack` test images: a random target label (≠ the true label and ≠ the
# prediction), then `attacks.lbfgs` minimises $c\lVert x' - x\rVert^2 + \mathrm{CE}(x', t)$ over the
# box $[0, 1]^{784}$ and searches c per example for the smallest perturbation that reaches t.

# %%
x_att, y_att = ds.x_test[:P["n_attack"]], ds.y_test[:P["n_attack"]]
examples = {}
for name in P["attack_models"]:
    m = models[name]
    examples[name] = adversarial.lbfgs_examples(m["recipe"], m["variables"], x_att, y_att,
                                                key=jax.random.fold_in(keys["attack"], len(examples)),
                                                c_rounds=P["c_rounds"], maxiter=P["lbfgs_maxiter"],
                                                chunk=P["n_attack"])
    m["stats"] = adversarial.example_stats(examples[name])
    paper = szegedy_table1.PAPER[name]["distortion"].value if name in szegedy_table1.PAPER else None
    print(f"{name:>14}: attack success {m['stats']['attack_success_rate']:.0%}, mean distortion "
          f"{m['stats']['mean_distortion']:.4f} (paper, MNIST: {paper}), all in [0, 1]: "
          f"{m['stats']['targets_reached_in_box']}")

k = 6
fig, axes = plt.subplots(3 * len(examples), k, figsize=(1.6 * k, 1.75 * 3 * len(examples)))
for r, (name, ex) in enumerate(examples.items()):
    idx = np.flatnonzero(ex["success"])[:k]
    for j in range(k):
        for i in range(3):
            axes[3 * r + i, j].set_axis_off()
        if j >= idx.size:
            continue
        e = idx[j]
        axes[3 * r, j].imshow(ex["x"][e], cmap="gray", vmin=0, vmax=1)
        axes[3 * r, j].set_title(f"{names[ex['y'][e]]}", fontsize=7)
        axes[3 * r + 1, j].imshow(ex["x_adv"][e], cmap="gray", vmin=0, vmax=1)
        axes[3 * r + 1, j].set_title(f"→ {names[ex['target'][e]]}\ndistortion {ex['distortion'][e]:.3f}", fontsize=7)
        axes[3 * r + 2, j].imshow(0.5 + 5 * (ex["x_adv"][e] - ex["x"][e]), cmap="seismic", vmin=0, vmax=1)
    axes[3 * r, 0].text(-0.5, 0.5, f"{name}\noriginal", transform=axes[3 * r, 0].transAxes, ha="right", fontsize=8)
    axes[3 * r + 1, 0].text(-0.5, 0.5, "adversarial", transform=axes[3 * r + 1, 0].transAxes, ha="right", fontsize=8)
    axes[3 * r + 2, 0].text(-0.5, 0.5, "difference ×5", transform=axes[3 * r + 2, 0].transAxes, ha="right", fontsize=8)
fig.suptitle(f"Targeted L-BFGS adversarial examples ({ds.name}): original, adversarial (target), difference")
save(fig, "lbfgs_examples")

fig, ax = plt.subplots(figsize=(7, 4))
for name, ex in examples.items():
    ax.hist(ex["distortion"][ex["success"]], bins=15, alpha=0.6, label=f"{name} (mean {ex['distortion'][ex['success']].mean():.3f})")
ax.set(xlabel="distortion $\\sqrt{\\sum (x' - x)^2 / 784}$", ylabel="count",
       title="Minimum distortion found by L-BFGS, per model")
ax.legend(fontsize=8)
save(fig, "distortion")

# %% [markdown]
# ## 3. Transfer: every model on every model's examples
#
# Row: whose successful examples (or which noise); column: the model evaluated; entry: its error
# rate (prediction ≠ true label). The diagonal is 100% by construction. Gaussian noise rows
# (clipped to [0, 1]) and the clean images are the controls.

# %%
rows = {name: (ex["x_adv"], ex["y"], ex["success"]) for name, ex in examples.items()}
for i, sigma in enumerate(P["noise_sigmas"]):
    rows[f"noise σ={sigma:g}"] = (adversarial.gaussian_noise(jax.random.fold_in(keys["noise"], i), x_att, sigma),
                                  y_att, np.ones(len(y_att), bool))
rows["clean"] = (x_att, y_att, np.ones(len(y_att), bool))
matrix = adversarial.transfer_matrix({n: models[n] for n in P["models"]}, rows)

cols = list(P["models"])
grid = np.array([[matrix[r][c] for c in cols] for r in matrix])
fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 3, 0.5 * len(matrix) + 1.5))
imh = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1)
for (i, j), v in np.ndenumerate(grid):
    ax.text(j, i, f"{v:.0%}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=9)
ax.set_xticks(range(len(cols)), cols, rotation=20)
ax.set_yticks(range(len(matrix)), [f"{r} (n={matrix[r]['_count']})" for r in matrix])
ax.set(xlabel="model evaluated", ylabel="examples made for / control",
       title=f"Transfer of L-BFGS examples: error rate ({ds.name})")
fig.colorbar(imh, ax=ax, label="error rate")
save(fig, "transfer_matrix")

# %% [markdown]
# ## 4. Single units versus random directions (§3)
#
# Szegedy et al. found that the test images maximising one hidden unit $\langle\phi(x), e_i\rangle$
# look no more semantically coherent than those maximising a random direction
# $\langle\phi(x), v\rangle$ of the same layer: the space, not the units, carries the meaning.
# Label purity (the share of the top images with the most common label) puts a number on the grids.

# %%
um = models[P["units_model"]]
x_s, y_s = ds.x_test[:P["n_search"]], ds.y_test[:P["n_search"]]
feats = np.asarray(jax.jit(im.features_fn(um["recipe"].module))(um["variables"], x_s))
alive = np.flatnonzero(feats.max(axis=0) > feats.min(axis=0))
units = np.asarray(jax.random.choice(keys["units"], alive, (min(P["n_directions"], alive.size),), replace=False))
v = np.array(jax.random.normal(keys["directions"], (P["n_directions"], feats.shape[1])))
v /= np.linalg.norm(v, axis=1, keepdims=True)
top_unit = np.argsort(-feats[:, units], axis=0)[:P["top_k"]].T
top_random = np.argsort(-(feats @ v.T), axis=0)[:P["top_k"]].T
purity = {"units": [label_purity(y_s[i]) for i in top_unit],
          "random directions": [label_purity(y_s[i]) for i in top_random]}

tops = [("unit", u, t) for u, t in zip(units, top_unit)] + [("random v", j, t) for j, t in enumerate(top_random)]
fig, axes = plt.subplots(len(tops), P["top_k"], figsize=(1.2 * P["top_k"] + 1.5, 1.25 * len(tops)))
for r, (kind, which, idx) in enumerate(tops):
    for j, e in enumerate(idx):
        axes[r, j].imshow(x_s[e], cmap="gray", vmin=0, vmax=1)
        axes[r, j].set_axis_off()
    p = label_purity(y_s[idx])
    axes[r, 0].text(-0.3, 0.5, f"{kind} {which}\npurity {p:.2f}", transform=axes[r, 0].transAxes,
                    ha="right", va="center", fontsize=8)
fig.suptitle(f"Top test images: single units (top rows) vs random directions (bottom rows)\n"
             f"last hidden layer of {P['units_model']}")
save(fig, "units_vs_random_directions")
print({k_: float(np.mean(v_)) for k_, v_ in purity.items()})

# %% [markdown]
# ## 5. Per-layer upper Lipschitz bounds (§4.3)
#
# For a feed-forward net, $\lVert f(x) - f(x + r)\rVert \le \prod_k L_k \lVert r\rVert$ with $L_k$ the
# operator norm of layer k (dense: largest singular value; convolution: the largest singular value
# over the 2-D DFT frequencies, stride handled by aliasing) and the activations' constants (ReLU 1,
# sigmoid 1/4). The measured input-Jacobian norm at test points is a lower bound on the true constant.

# %%
x_probe = ds.x_test[:P["n_probe"]]
lip = {}
for name, m in models.items():
    layers = adversarial.layer_bounds(m["recipe"], m["variables"])
    jac = adversarial.jacobian_norms(m["recipe"], m["variables"], x_probe, key=keys["probe"], iters=P["power_iters"])
    lip[name] = {"layers": layers, "product": float(np.prod([l["bound"] for l in layers])),
                 "product_with_activations": float(np.prod([l["bound"] * l["activation_lipschitz"] for l in layers])),
                 "max_jacobian_norm": float(jac.max())}
    print(f"{name:>14}: per layer " + " × ".join(f"{l['bound']:.3g}" for l in layers)
          + f" = {lip[name]['product']:.3g}; with activations {lip[name]['product_with_activations']:.3g}; "
          f"measured max ‖J‖ {lip[name]['max_jacobian_norm']:.3g}")

fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
for i, (name, r) in enumerate(lip.items()):
    label = name + (" (untrained)" if models[name]["epochs"] == 0 else "")
    ax[0].plot(range(1, len(r["layers"]) + 1), [l["bound"] for l in r["layers"]], "o-", label=label)
ax[0].set_xticks(range(1, 1 + max(len(r["layers"]) for r in lip.values())))
ax[0].set(xlabel="layer (forward order)", ylabel="operator-norm upper bound", yscale="log",
          title="Per-layer upper Lipschitz bounds")
ax[0].legend(fontsize=8)
labels = [n + ("*" if models[n]["epochs"] == 0 else "") for n in lip]
xs = np.arange(len(lip))
ax[1].bar(xs - 0.2, [r["product_with_activations"] for r in lip.values()], 0.4, label="upper bound (product)")
ax[1].bar(xs + 0.2, [r["max_jacobian_norm"] for r in lip.values()], 0.4, label="measured max ‖J‖ (lower bound)")
ax[1].set_xticks(xs, labels, rotation=15)
ax[1].set(yscale="log", ylabel="Lipschitz constant of the logits",
          title="Whole network: bound vs measured (* untrained)")
ax[1].legend(fontsize=8)
save(fig, "lipschitz_bounds")

# %% [markdown]
# Numbers for the record (and for the notebook test).

# %%
summary = {
    "size": SIZE, "dataset": ds.describe(),
    "models": {n: {"train_error": m["train_error"], "test_error": m["test_error"], "epochs": m["epochs"],
                   **m.get("stats", {})} for n, m in models.items()},
    "transfer": matrix, "unit_purity": purity, "lipschitz": lip,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
print(json.dumps(summary["models"], indent=1))
