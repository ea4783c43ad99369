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
# # 05 · Goodfellow et al. 2015: the linear explanation, FGSM, adversarial training
#
# "Explaining and Harnessing Adversarial Examples". For a linear score $w^\top x$ a perturbation with
# $\lVert\eta\rVert_\infty \le \varepsilon$ changes the score by at most $\varepsilon\lVert w\rVert_1$,
# attained at $\eta = \varepsilon\,\mathrm{sign}(w)$: many tiny changes add up in high dimension. The
# fast gradient sign method (FGSM) takes $\eta = \varepsilon\,\mathrm{sign}(\nabla_x J)$, exact for linear
# models and, the paper argues, good enough for networks that are "too linear". This notebook
#
# 1. checks the linear explanation on **logistic regression** (two classes): the attack
#    (`attacks.fgsm`, `attacks.minimal_epsilon`) against the closed forms
#    (`theory.fgsm_linear_logit_change`: $\varepsilon\lVert w\rVert_1$; minimal $\varepsilon = |z|/\lVert w\rVert_1$),
# 2. plots **FGSM error against ε** for softmax regression, a maxout network and logistic regression,
#    with the confidence of the mistakes,
# 3. **adversarial training**: logistic regression with the closed-form adversarial loss
#    $\zeta(\varepsilon\lVert w\rVert_1 - y(w^\top x + b))$ and maxout with
#    $\tilde J = \alpha J(x) + (1 - \alpha) J(x + \varepsilon\,\mathrm{sign}\nabla_x J)$, against plain training.
#
# The paper used MNIST; this notebook runs on Fashion-MNIST, where the logistic-regression pair is
# Sandal vs Ankle boot (the pair of the same kind and difficulty as the paper's 3 vs 7).

# %% tags=["parameters"]
SIZE = "small"   # "small": 2000 images, 4 epochs, maxout 100 units (about a minute); "full": all 60k images, 100 epochs, maxout 240 (hours on CPU)
DATASET = "fashion_mnist_sample"   # the sample shipped with the package; "fashion_mnist" or "mnist": the full set
DATA_DIR = None   # full sets: None = $SPHERES_DATA, then Debian's /usr/share/datasets/fashion-mnist
OUT_DIR = "../runs/notebooks/05_goodfellow_fgsm"
SEED = 0

# %%
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import attacks
import theory
from spheres.experiments import goodfellow_adversarial_training, goodfellow_fgsm
from spheres.images import adversarial
from spheres.images import data as idata
from spheres.images import models as im
from spheres.images import train as itrain
from spheres.images.evaluate import evaluate, predict_logits
from spheres.keys import stream_key

SIZES = {
    "small": dict(n_train=2000, n_test=500, n_binary_train=1000, n_binary_test=200, epochs=4, batch=50,
                  lr=3e-3, maxout_units=100, n_min_eps=200),
    "full": dict(n_train=None, n_test=None, n_binary_train=None, n_binary_test=None, epochs=100, batch=100,
                 lr=1e-3, maxout_units=240, n_min_eps=2000),
}
P = SIZES[SIZE]
EPS = 0.25                      # the paper's FGSM step on MNIST (pixels in [0, 1])
EPS_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
CLASSES = (5, 9)                # Sandal vs Ankle boot: the Fashion-MNIST pair nearest the paper's MNIST 3 vs 7 (use (3, 7) on MNIST)
ALPHA = 0.5                     # adversarial-training mix
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)

full = idata.load_dataset(DATASET, DATA_DIR)
ds = idata.take(full, P["n_train"], P["n_test"])
binary = idata.take(idata.binary_subset(full, *CLASSES), P["n_binary_train"], P["n_binary_test"])
names = idata.CLASS_NAMES[full.name]
print(f"SIZE={SIZE}; 10 classes: {ds.describe()}\n{names[CLASSES[0]]} vs {names[CLASSES[1]]}: {binary.describe()}")


def save(fig, name):
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.show()


def train(name, data, **adversarial):
    """One of the paper's models (`spheres.images.models.paper_model`) trained by
    `spheres.images.train.train_recipe`."""
    recipe = im.paper_model(name, maxout_units=P["maxout_units"])
    settings = itrain.settings_for(recipe, epochs=P["epochs"], batch=P["batch"], lr=P["lr"], **adversarial)
    variables = itrain.train_recipe(recipe, settings, data.x_train, data.y_train,
                                    key=stream_key(SEED, f"train/{name}"))   # same init and batches for every variant
    return recipe, variables


# %% [markdown]
# ## 1. The linear explanation on logistic regression
#
# Train $P(y = 1 \mid x) = \sigma(w^\top x + b)$ on the two classes. Without the pixel box, FGSM on it is
# exact: every logit moves by $\varepsilon\lVert w\rVert_1$ toward the wrong class, so an example with
# logit $z$ flips at $\varepsilon^* = |z| / \lVert w\rVert_1$ and the error at ε is the share of test points
# with $|z| \le \varepsilon\lVert w\rVert_1$ (or already wrong). We compare that with `attacks.fgsm` and
# with the per-example bisection `attacks.minimal_epsilon`. Clipping to [0, 1] (the realistic attack)
# can only weaken it.

# %%
logreg, v_logreg = train("logreg", binary)
w = np.asarray(v_logreg["params"]["dense_0"]["kernel"][:, 0])
b = float(v_logreg["params"]["dense_0"]["bias"][0])
x_b = binary.x_test.reshape(len(binary.x_test), -1)
y_b = binary.y_test
z = np.asarray(predict_logits(logreg.module, v_logreg, binary.x_test))
w_l1 = float(jnp.sum(jnp.abs(jnp.asarray(w))))
print(f"clean test error {np.mean((z > 0) != (y_b == 1)):.1%}; ||w||_1 = {w_l1:.2f}; "
      f"logit change at eps = {EPS}: {float(theory.fgsm_linear_logit_change(jnp.asarray(w), EPS)):.2f}")

f_logreg = im.apply_fn(logreg.module)
res = attacks.fgsm(f_logreg, jnp.asarray(x_b), jnp.asarray(y_b), eps=EPS, params=v_logreg)   # no box
z_adv = np.asarray(predict_logits(logreg.module, v_logreg, np.asarray(res.x_adv).reshape(binary.x_test.shape)))
change_gap = float(np.max(np.abs(np.abs(z_adv - z) - float(theory.fgsm_linear_logit_change(jnp.asarray(w), EPS)))))
print(f"max | |z_adv - z| - eps ||w||_1 | over {len(z)} test points: {change_gap:.2e}")

n = P["n_min_eps"]
correct = ((z > 0) == (y_b == 1))[:n]
found = attacks.minimal_epsilon(attacks.fgsm, f_logreg, jnp.asarray(x_b[:n]), jnp.asarray(y_b[:n]),
                                hi=2.0, num_bisections=20, params=v_logreg)
eps_attack = np.asarray(found.eps)[correct]
eps_closed = np.abs(z[:n][correct]) / float(theory.fgsm_linear_logit_change(jnp.asarray(w), 1.0))   # |z| / ||w||_1
print(f"minimal eps, attack vs closed form |z|/||w||_1: max abs difference "
      f"{np.max(np.abs(eps_attack - eps_closed)):.2e} over {correct.sum()} correctly classified points")

grid = np.linspace(0, max(EPS_GRID), 31)
margin = z * (2 * y_b - 1)     # signed logit: > 0 when correct
closed_error = [float(np.mean(margin <= float(theory.fgsm_linear_logit_change(jnp.asarray(w), e)))) for e in grid]
attack_error = [float(np.mean(np.asarray(attacks.fgsm(f_logreg, jnp.asarray(x_b), jnp.asarray(y_b), eps=e,
                                                       params=v_logreg).success))) for e in EPS_GRID]
boxed_error = [adversarial.fgsm_evaluation(logreg, v_logreg, binary.x_test, y_b, e, clip=True)[0].error
               if e > 0 else float(np.mean((z > 0) != (y_b == 1))) for e in EPS_GRID]

fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
m = np.abs(w).max()
ax[0].imshow(w.reshape(28, 28), cmap="seismic", vmin=-m, vmax=m)
ax[0].set(title="weights w", xticks=[], yticks=[])
ax[1].imshow(np.sign(w).reshape(28, 28), cmap="gray")
ax[1].set(title="sign(w): the FGSM direction", xticks=[], yticks=[])
ax[2].plot(eps_closed, eps_attack, ".", ms=4, label="test points")
lim = max(eps_closed.max(), 1e-3)
ax[2].plot([0, lim], [0, lim], "k--", lw=1, label="y = x")
ax[2].set(xlabel="closed form $|z| / \\|w\\|_1$", ylabel="attacks.minimal_epsilon(fgsm)",
          title="Minimal L$_\\infty$ step that flips the class")
ax[2].legend(fontsize=8)
ax[3].plot(grid, closed_error, "k-", label="closed form (no box)")
ax[3].plot(EPS_GRID, attack_error, "o", label="FGSM, no box")
ax[3].plot(EPS_GRID, boxed_error, "s--", label="FGSM clipped to [0, 1]")
ax[3].set(xlabel="ε", ylabel="test error", title=f"Logistic regression {names[CLASSES[0]]} vs {names[CLASSES[1]]}")
ax[3].legend(fontsize=8)
fig.tight_layout()
save(fig, "logistic_linear_explanation")

# %% [markdown]
# ## 2. FGSM error against ε, and the confidence of the mistakes
#
# Softmax regression and a maxout network (2 layers of maxout units, 5 pieces each, dropout) on the
# ten classes, logistic regression on the two; FGSM clipped to the pixel box. Confidence is the
# probability the model gives its (wrong) prediction.

# %%
zoo = {"softmax": (*train("softmax", ds), ds), "maxout": (*train("maxout-240", ds), ds),
       "logreg": (logreg, v_logreg, binary)}
curves = {}
for name, (recipe, variables, data) in zoo.items():
    evs = [adversarial.fgsm_evaluation(recipe, variables, data.x_test, data.y_test, e, clip=True)[0] if e > 0
           else evaluate(recipe.module, variables, data.x_test, data.y_test) for e in EPS_GRID]
    curves[name] = {"error": [e.error for e in evs], "confidence_on_mistakes": [e.confidence_on_mistakes for e in evs]}
    paper = goodfellow_fgsm.PAPER[name]
    i = EPS_GRID.index(EPS)
    print(f"{name:>8}: clean error {evs[0].error:.1%}; at eps = {EPS}: error {evs[i].error:.1%}, "
          f"confidence on mistakes {evs[i].confidence_on_mistakes:.1%} (paper, MNIST: {paper['fgsm_error'].value}, "
          f"{paper['confidence'].value if 'confidence' in paper else '-'})")

recipe, variables, _ = zoo["maxout"]
x_show, y_show = ds.x_test[:6], ds.y_test[:6]
x_adv_show, _ = adversarial.fgsm_examples(recipe, variables, x_show, y_show, EPS, clip=True)
pred_clean = evaluate(recipe.module, variables, x_show, y_show)
pred_adv = evaluate(recipe.module, variables, x_adv_show, y_show)

fig = plt.figure(figsize=(15, 4.2))
gs = fig.add_gridspec(2, 8)
ax_e, ax_c = fig.add_subplot(gs[:, :3]), fig.add_subplot(gs[:, 3:5])
for name, c in curves.items():
    ax_e.plot(EPS_GRID, c["error"], "o-", label=name)
    ax_c.plot(EPS_GRID[1:], c["confidence_on_mistakes"][1:], "o-", label=name)
ax_e.axvline(EPS, color="gray", lw=0.5)
ax_e.set(xlabel="ε (L$_\\infty$, pixels in [0, 1])", ylabel="test error under FGSM", title="FGSM error vs ε")
ax_e.legend(fontsize=8)
ax_c.set(xlabel="ε", ylabel="mean confidence on mistakes", title="Confidence of the mistakes", ylim=(0, 1.05))
for j in range(3):
    for row, (imgs, ev) in enumerate(((x_show, pred_clean), (x_adv_show, pred_adv))):
        a = fig.add_subplot(gs[row, 5 + j])
        a.imshow(imgs[j], cmap="gray", vmin=0, vmax=1)
        a.set_axis_off()
        a.set_title(f"{names[ev.predictions[j]]} ({ev.confidence[j]:.0%})", fontsize=7)
fig.suptitle(f"FGSM on {ds.name}; right: maxout on clean (top) and ε = {EPS} (bottom) images")
save(fig, "fgsm_error_vs_eps")

# %% [markdown]
# ## 3. Adversarial training
#
# Logistic regression: the adversarial objective has a closed form (`theory.adversarial_logistic_loss`,
# used by `spheres.images.train` with `adversarial="logistic_closed_form"`): like L1 weight decay, but inside
# the loss, so it stops pushing once the margin is large. Maxout: FGSM examples regenerated against
# the current parameters at every step (`adversarial="fgsm"`), α = 0.5.

# %%
logreg_adv, v_logreg_adv = train("logreg", binary, adversarial="logistic_closed_form", eps=EPS, alpha=ALPHA)
maxout_adv, v_maxout_adv = train("maxout-240", ds, adversarial="fgsm", eps=EPS, alpha=ALPHA)
pairs = {"logreg": ((logreg, v_logreg), (logreg_adv, v_logreg_adv), binary),
         "maxout": (zoo["maxout"][:2], (maxout_adv, v_maxout_adv), ds)}
adv_curves = {}
for name, (plain, adv, data) in pairs.items():
    adv_curves[name] = {}
    for label, (r, v) in (("plain", plain), ("adversarial", adv)):
        evs = [adversarial.fgsm_evaluation(r, v, data.x_test, data.y_test, e, clip=True)[0] if e > 0
               else evaluate(r.module, v, data.x_test, data.y_test) for e in EPS_GRID]
        adv_curves[name][label] = {"error": [e.error for e in evs],
                                   "confidence_on_mistakes": [e.confidence_on_mistakes for e in evs]}
# transfer at EPS: examples made against one maxout, evaluated on the other
x_pl, _ = adversarial.fgsm_examples(*pairs["maxout"][0], ds.x_test, ds.y_test, EPS, clip=True)
x_ad, _ = adversarial.fgsm_examples(*pairs["maxout"][1], ds.x_test, ds.y_test, EPS, clip=True)
transfer = {"plain -> adversarially trained": evaluate(maxout_adv.module, v_maxout_adv, x_pl, ds.y_test).error,
            "adversarially trained -> plain": evaluate(zoo["maxout"][0].module, zoo["maxout"][1], x_ad, ds.y_test).error}
for name, c in adv_curves.items():
    i = EPS_GRID.index(EPS)
    print(f"{name}: clean error plain {c['plain']['error'][0]:.1%} / adversarial {c['adversarial']['error'][0]:.1%}; "
          f"FGSM error at eps = {EPS}: plain {c['plain']['error'][i]:.1%} / adversarial {c['adversarial']['error'][i]:.1%}")
print({k_: f"{v_:.1%}" for k_, v_ in transfer.items()},
      "(paper, MNIST maxout:", {k_: goodfellow_adversarial_training.PAPER[k_].value for k_ in transfer}, ")")

# %% [markdown]
# **Label leaking.** FGSM with the true label writes $\mathrm{sign}(\nabla_x J(x, y))$ into the image, and a
# net trained on such examples can learn to read $y$ back from it (Kurakin, Goodfellow & Bengio 2017): on the
# full Fashion-MNIST run the adversarially trained maxout erred *less* on FGSM examples (5.0 %) than on clean
# images (11.2 %). Two label-free attacks at the same ε tell real robustness from leaking
# (`spheres.images.adversarial.label_free_robustness`): FGSM away from the model's own prediction ŷ, and L∞ PGD
# (`adversarial.PGD_STEPS` steps of 2.5ε/steps, one random start), both judged against the true label.

# %%
leaking = {}
for label, (r, v) in (("plain", pairs["maxout"][0]), ("adversarial", pairs["maxout"][1])):
    clean = evaluate(r.module, v, ds.x_test, ds.y_test)     # for ŷ; its error is the curve's ε = 0
    free = adversarial.label_free_robustness(r, v, ds.x_test, ds.y_test, clean.predictions, EPS, clip=True,
                                             key=stream_key(SEED, f"train/pgd/{label}"))
    leaking[label] = {"clean_error": clean.error, "fgsm_error": adv_curves["maxout"][label]["error"][EPS_GRID.index(EPS)],
                      **free}
print(f"maxout at eps = {EPS}:      clean   FGSM(y)  FGSM(ŷ)  PGD-{adversarial.PGD_STEPS}")
for label, row in leaking.items():
    print(f"  {label:12s} training {row['clean_error']:7.1%} {row['fgsm_error']:8.1%} "
          f"{row['fgsm_predicted_label_error']:8.1%} {row['pgd_error']:8.1%}")

# %%
w_adv = np.asarray(v_logreg_adv["params"]["dense_0"]["kernel"][:, 0])
fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
for a, (label, ww) in zip(ax[:2], (("plain", w), (f"adversarial (closed form, ε = {EPS})", w_adv))):
    mm = np.abs(ww).max()
    a.imshow(ww.reshape(28, 28), cmap="seismic", vmin=-mm, vmax=mm)
    a.set(title=f"logistic weights: {label}\n$\\|w\\|_1$ = {np.abs(ww).sum():.1f}", xticks=[], yticks=[])
for a, name in zip(ax[2:], ("logreg", "maxout")):
    for label, style in (("plain", "o-"), ("adversarial", "s-")):
        a.plot(EPS_GRID, adv_curves[name][label]["error"], style, label=f"{label} training")
    a.axvline(EPS, color="gray", lw=0.5)
    a.set(xlabel="ε", ylabel="test error under FGSM (clipped)", title=f"{name}: plain vs adversarial training")
    a.legend(fontsize=8)
fig.tight_layout()
save(fig, "adversarial_training")

# %% [markdown]
# Numbers for the record (and for the notebook test).

# %%
summary = {
    "size": SIZE, "dataset": ds.describe(), "binary": binary.describe(), "eps": EPS, "eps_grid": list(EPS_GRID),
    "logreg": {"w_l1": w_l1, "clean_error": float(np.mean((z > 0) != (y_b == 1))),
               "fgsm_logit_change_max_gap": change_gap,
               "min_eps_max_abs_diff": float(np.max(np.abs(eps_attack - eps_closed))),
               "min_eps_scale": float(eps_closed.max()),
               "closed_form_error_at_grid": [float(np.mean(margin <= float(theory.fgsm_linear_logit_change(jnp.asarray(w), e))))
                                             for e in EPS_GRID],
               "attack_error_at_grid": attack_error, "boxed_error_at_grid": boxed_error},
    "fgsm_curves": curves, "adversarial_training": adv_curves, "transfer": transfer,
    "label_leaking": leaking,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary["logreg"], indent=1))
