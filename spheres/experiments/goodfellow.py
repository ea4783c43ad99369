"""Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples" (arXiv
1412.6572), on images.

Experiments (each ``spheres run NAME --preset quick|full [--set dataset=mnist] [--set data_dir=DIR]``):

* ``goodfellow-fgsm``: error and confidence under FGSM at ε = 0.25 for shallow softmax, maxout,
  logistic regression (3 vs 7) and a shallow RBF network; error-vs-ε curves (§4, §7).
* ``goodfellow-logistic``: logistic regression trained plainly, with the closed-form adversarial
  objective ``ζ(ε‖w‖₁ − y(wᵀx + b))`` (``theory.adversarial_logistic_loss``) and with L1 weight
  decay; weight images; clean and FGSM error; FGSM checked against the closed forms (§5).
* ``goodfellow-adversarial-training``: maxout trained with ``J̃ = α J + (1 − α) J(x + ε sign ∇ₓJ)``,
  α = 0.5, ε = 0.25, against plain training and the noise controls (±ε, U(−ε, ε)); clean error,
  adversarial error, confidence on mistakes, transfer both ways (§6).
* ``goodfellow-agreement``: on maxout's FGSM examples that fool it, how often softmax and RBF
  predict the same wrong class (§8).
* ``goodfellow-rubbish``: N(0, I) "rubbish" inputs; fraction classified with p > 0.5 (§8 / Fig.).

FGSM examples are clipped to the pixel box [0, 1] (``clip``; the paper does not say) except in the
closed-form checks of ``goodfellow-logistic``, which use the unclipped step where the closed form
is exact. Paper numbers are for MNIST; the default dataset here is Fashion-MNIST and every table
says so. MNIST: ``spheres run goodfellow-fgsm --preset full --set dataset=mnist --set data_dir=DIR``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing

import jax
import jax.numpy as jnp
import numpy as np

import attacks
import theory

from .. import image_data as idata
from .. import image_models as im
from .. import image_train as itrain
from ..config import require
from ..results import RunDir
from . import register
from .szegedy import (ImageConfig, base_summary, finish_summary, in_order, load_data, model_key,
                      named_keys, pct, render_table, train_cached)

# Goodfellow et al. 2015 (MNIST, ε = 0.25; verified per PAPERS.md).
PAPER_FGSM = {   # model -> (error under FGSM, mean confidence on the adversarial mistakes)
    "softmax": (0.999, 0.793),
    "maxout": (0.894, 0.976),
    "logreg": (0.99, None),
    "rbf": (0.554, 0.012),
}
PAPER_LOGREG_CLEAN_ERROR = 0.016
PAPER_ADV_TRAINING = {
    "plain": {"clean_error": 0.0094, "adversarial_error": 0.894},
    "fgsm adversarial (α=0.5)": {"clean_error": 0.0084, "adversarial_error": 0.179, "confidence_on_mistakes": 0.814},
    "noise ±ε": {"adversarial_error": 0.862},
    "noise U(−ε, ε)": {"adversarial_error": 0.904},
}
PAPER_ADV_TRAINING_1600 = {"plain_clean_error": 0.0114, "adversarial_clean_error": 0.00782}
PAPER_TRANSFER = {"plain -> adversarially trained": 0.196, "adversarially trained -> plain": 0.409}
PAPER_AGREEMENT = {"softmax": 0.546, "rbf": 0.160}
PAPER_RUBBISH = {"maxout": (0.9835, 0.928), "softmax": (0.598, None), "rbf": (0.0, None)}
PAPER_SOURCE = "Goodfellow et al. 2015 (MNIST, verified per PAPERS.md)"


@dataclasses.dataclass(frozen=True)
class GoodfellowConfig(ImageConfig):
    """Fields shared by the Goodfellow experiments.

    ``eps``: FGSM step (L∞, pixels in [0, 1]); ``clip``: clip FGSM examples to [0, 1];
    ``maxout_units`` × ``maxout_pieces``: the maxout layers (paper 240 × 5; 1600 for adversarial
    training); ``rbf_lr``: the RBF network's learning rate; ``n_eval``: the first test examples the
    attacks use (0 = all).
    """

    eps: float = 0.25
    clip: bool = True
    maxout_units: int = 240
    maxout_pieces: int = 5
    rbf_lr: float = 1e-2
    n_eval: int = 0

    def validate(self) -> None:
        super().validate()
        require(self.eps > 0 and math.isfinite(self.eps), f"eps must be positive (got {self.eps})")
        require(self.maxout_units >= 1 and self.maxout_pieces >= 1, "maxout_units and maxout_pieces must be >= 1")
        require(self.rbf_lr > 0, f"rbf_lr must be positive (got {self.rbf_lr})")
        require(self.n_eval >= 0 and (self.n_test == 0 or self.n_eval <= self.n_test),
                f"n_eval must be between 0 (all) and n_test (got {self.n_eval})")


_QUICK = dict(preset_name="quick", dataset=idata.SAMPLE, n_train=4000, n_test=1000, epochs=4, batch=50, lr=3e-3, maxout_units=100)
_FULL = dict(preset_name="full", epochs=100, batch=100, lr=1e-3, maxout_units=240, ckpt_every=5)


def _train(cfg: GoodfellowConfig, run_dir: RunDir, name: str, ds: idata.ImageDataset, *, progress: bool, **settings_kw):
    """Train one of ``softmax``, ``maxout``, ``rbf``, ``logreg`` (cached in the run dir)."""
    base = name.split("+")[0]
    paper_name = {"maxout": "maxout-240"}.get(base, base)
    recipe = im.paper_model(paper_name, maxout_units=cfg.maxout_units, maxout_pieces=cfg.maxout_pieces)
    lr = cfg.rbf_lr if base == "rbf" else cfg.lr
    settings = itrain.settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=lr, **settings_kw)
    return train_cached(cfg, run_dir, name, ds.x_train, ds.y_train, progress=progress, recipe=recipe,
                        settings=settings, key=model_key(cfg.seed, base))


def _eval_set(cfg: GoodfellowConfig, ds: idata.ImageDataset):
    n = cfg.n_eval or ds.x_test.shape[0]
    return ds.x_test[:n], ds.y_test[:n]


def _flat(x: np.ndarray) -> jax.Array:
    """Images ``(n, 28, 28)`` as the ``(n, 784)`` float32 inputs the attacks take."""
    return jnp.asarray(np.asarray(x, np.float32).reshape(x.shape[0], -1))


def fgsm_examples(recipe: im.ModelRecipe, variables, x: np.ndarray, y: np.ndarray, eps, *, clip: bool):
    """``attacks.fgsm`` on flattened images; returns ``(x_adv (n, 28, 28), AttackResult)``."""
    res = attacks.fgsm(im.apply_fn(recipe.module), _flat(x), jnp.asarray(y, jnp.int32), eps=eps,
                       bounds=(0.0, 1.0) if clip else None, params=variables)
    return np.asarray(res.x_adv).reshape(x.shape), res


def fgsm_evaluation(recipe, variables, x, y, eps, *, clip: bool) -> tuple[itrain.Evaluation, np.ndarray]:
    x_adv, _ = fgsm_examples(recipe, variables, x, y, eps, clip=clip)
    return itrain.evaluate(recipe.module, variables, x_adv, y), x_adv


PGD_STEPS = 20


def label_free_robustness(recipe, variables, x, y, predictions, eps, *, clip: bool, key: jax.Array) -> dict:
    """Errors that an FGSM-trained model cannot pass by reading the label off the perturbation.

    FGSM with the true label encodes y in ``sign(∇ₓJ(x, y))``; a model trained on such examples can
    learn to decode it and err LESS on them than on clean images ("label leaking", Kurakin,
    Goodfellow & Bengio 2017). Returned: ``fgsm_predicted_label_error`` (FGSM toward leaving the
    model's own prediction ŷ = ``predictions``, the clean evaluation's, no label information) and
    ``pgd_error`` (L∞ PGD, `PGD_STEPS` steps of 2.5ε/`PGD_STEPS`, one random start from ``key``),
    both judged against the true y.
    """
    x_pred, _ = fgsm_examples(recipe, variables, x, predictions, eps, clip=clip)
    x_pgd = attacks.pgd(im.apply_fn(recipe.module), _flat(x), jnp.asarray(y, jnp.int32), eps=eps,
                        num_steps=PGD_STEPS, bounds=(0.0, 1.0) if clip else None, key=key,
                        params=variables).x_adv
    ev = lambda xa: itrain.evaluate(recipe.module, variables, np.asarray(xa).reshape(x.shape), y).error  # noqa: E731
    return {"fgsm_predicted_label_error": ev(x_pred), "pgd_error": ev(x_pgd), "pgd_steps": PGD_STEPS}


def _add_eval(summary_row: dict, prefix: str, ev: itrain.Evaluation) -> None:
    summary_row[f"{prefix}error"] = ev.error
    summary_row[f"{prefix}mean_confidence"] = ev.mean_confidence
    summary_row[f"{prefix}confidence_on_mistakes"] = ev.confidence_on_mistakes


# =========================================================================== FGSM


@dataclasses.dataclass(frozen=True)
class GoodfellowFGSMConfig(GoodfellowConfig):
    """FGSM at ``eps`` on softmax, maxout, RBF (10 classes) and logistic regression on classes
    ``logreg_classes``; error curves over ``eps_grid``."""

    eps_grid: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    logreg_classes: tuple[int, ...] = (3, 7)

    PRESETS: typing.ClassVar = {"quick": dict(_QUICK), "full": dict(_FULL)}
    COST: typing.ClassVar = {"quick": "~40 s CPU", "full": "~20 min on one CPU core (measured 1,256 s; maxout-240 for 100 epochs is 949 s of it)"}

    def validate(self) -> None:
        super().validate()
        require(all(e >= 0 for e in self.eps_grid) and len(self.eps_grid) >= 1, "eps_grid must be non-negative values")
        require(len(self.logreg_classes) == 2 and len(set(self.logreg_classes)) == 2
                and all(0 <= c <= 9 for c in self.logreg_classes),
                f"logreg_classes must be two different labels in 0..9 (got {self.logreg_classes})")


@register("goodfellow-fgsm", GoodfellowFGSMConfig,
          "Goodfellow §4, §7: FGSM error and confidence at eps=0.25 for softmax, maxout, logistic regression, RBF",
          table=lambda s: format_fgsm(s))
def run_fgsm(cfg: GoodfellowFGSMConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    binary = idata.binary_subset(ds, *cfg.logreg_classes)
    rows, curves = {}, {}
    for name in ("softmax", "maxout", "rbf", "logreg"):
        d = binary if name == "logreg" else ds
        recipe, variables, info = _train(cfg, run_dir, name, d, progress=progress)
        x, y = _eval_set(cfg, d) if name != "logreg" else (d.x_test, d.y_test)
        clean = itrain.evaluate(recipe.module, variables, x, y)
        adv, _ = fgsm_evaluation(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
        row = {"n_eval": int(x.shape[0]), "train_seconds": info["train_seconds"],
               "params": im.count_params(variables), "trained_on": d.label}
        _add_eval(row, "clean_", clean)
        _add_eval(row, "fgsm_", adv)
        rows[name] = row
        curves[name] = [fgsm_evaluation(recipe, variables, x, y, e, clip=cfg.clip)[0].error if e > 0 else clean.error
                        for e in cfg.eps_grid]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        ax.plot(cfg.eps_grid, c, marker="o", label=name)
    ax.axvline(cfg.eps, color="gray", lw=0.5)
    ax.set_xlabel("ε (L∞, pixels in [0, 1])")
    ax.set_ylabel("test error under FGSM")
    ax.set_title(f"FGSM on {ds.name}")
    ax.legend()
    run_dir.save_figure("fgsm_error_vs_eps", fig)
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "eps": cfg.eps, "clip_to_unit_box": cfg.clip, "models": rows,
        "error_vs_eps": {"eps": list(cfg.eps_grid), **curves},
        "logreg_classes": list(cfg.logreg_classes),
        "confidence_definition": "probability the model gives its predicted class (softmax; exp(score) for "
                                 "the RBF, whose classes are independent; sigmoid for logistic regression)",
        "paper_fgsm_error_and_confidence": {k: list(v) for k, v in PAPER_FGSM.items()},
        "paper_logreg_clean_error": PAPER_LOGREG_CLEAN_ERROR,
        "paper_source": PAPER_SOURCE + "; softmax/maxout/RBF §4 and §7, logistic regression 3 vs 7 Fig. 2",
    })
    return finish_summary(run_dir, summary, t0)


def format_fgsm(s: dict) -> str:
    rows = []
    for name, r in in_order(s["models"], ["softmax", "maxout", "rbf", "logreg"]):
        p_err, p_conf = s["paper_fgsm_error_and_confidence"][name]
        p_clean = s["paper_logreg_clean_error"] if name == "logreg" else None
        rows.append([name + (f" ({s['logreg_classes'][0]} vs {s['logreg_classes'][1]})" if name == "logreg" else ""),
                     pct(p_clean), pct(r["clean_error"]), pct(p_err), pct(r["fgsm_error"]),
                     pct(p_conf), pct(r["fgsm_confidence_on_mistakes"])])
    return render_table(s, f"FGSM at ε = {s['eps']:g} (Goodfellow §4, §7)",
                        ["model", "clean err paper", "ours", "FGSM err paper", "ours",
                         "conf. on mistakes paper", "ours"], rows,
                        [f"paper: {s['paper_source']}",
                         f"FGSM clipped to [0, 1]: {s['clip_to_unit_box']}; error-vs-ε curves: fgsm_error_vs_eps.png",
                         "confidence = " + s["confidence_definition"]])


# =========================================================================== logistic regression


@dataclasses.dataclass(frozen=True)
class GoodfellowLogisticConfig(GoodfellowConfig):
    """Logistic regression on two classes: plain, closed-form adversarial training (``alpha`` mix,
    ε = ``eps``) and L1 weight decay ``l1``. Also trains the adversarial variant through the FGSM
    objective (unclipped) to check it matches the closed form."""

    classes: tuple[int, ...] = (3, 7)
    alpha: float = 0.5
    l1: float = 0.0025

    PRESETS: typing.ClassVar = {
        "quick": dict(preset_name="quick", dataset=idata.SAMPLE, n_train=6000, n_test=1000, epochs=5, batch=50, lr=3e-3),
        "full": dict(preset_name="full", epochs=100, batch=100, lr=1e-3, ckpt_every=10),
    }
    COST: typing.ClassVar = {"quick": "~15 s CPU", "full": "~20 s on one CPU core (measured 16 s)"}

    def validate(self) -> None:
        super().validate()
        require(len(self.classes) == 2 and len(set(self.classes)) == 2 and all(0 <= c <= 9 for c in self.classes),
                f"classes must be two different labels in 0..9 (got {self.classes})")
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1] (got {self.alpha})")
        require(self.l1 >= 0, f"l1 must be >= 0 (got {self.l1})")


@register("goodfellow-logistic", GoodfellowLogisticConfig,
          "Goodfellow §5: logistic regression, closed-form adversarial training vs L1 decay; FGSM vs closed form",
          table=lambda s: format_logistic(s))
def run_logistic(cfg: GoodfellowLogisticConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    d = idata.binary_subset(ds, *cfg.classes)
    require(d.x_train.shape[0] >= cfg.batch, f"only {d.x_train.shape[0]} training examples of classes "
                                             f"{cfg.classes}; raise n_train")
    variants = {
        "plain": dict(),
        f"adversarial, closed form (α={cfg.alpha:g}, ε={cfg.eps:g})":
            dict(adversarial="logistic_closed_form", alpha=cfg.alpha, eps=cfg.eps),
        f"adversarial via FGSM objective (unclipped, α={cfg.alpha:g})":
            dict(adversarial="fgsm", alpha=cfg.alpha, eps=cfg.eps, clip=False),
        f"L1 weight decay {cfg.l1:g}": dict(l1=cfg.l1),
    }
    rows, weights = {}, {}
    x, y = d.x_test, d.y_test
    key = model_key(cfg.seed, "logreg")      # same init and minibatch order for every variant
    for label, kw in variants.items():
        recipe = im.paper_model("logreg")
        settings = itrain.settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, **kw)
        _, variables, info = train_cached(cfg, run_dir, f"logreg {label}", d.x_train, d.y_train, progress=progress,
                                          recipe=recipe, settings=settings, key=key)
        w = np.asarray(variables["params"]["dense_0"]["kernel"][:, 0])
        b = float(variables["params"]["dense_0"]["bias"][0])
        clean = itrain.evaluate(recipe.module, variables, x, y)
        adv, _ = fgsm_evaluation(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
        row = {"train_error": itrain.evaluate(recipe.module, variables, d.x_train, d.y_train).error,
               "w_l1_norm": float(np.abs(w).sum()), "bias": b, "train_seconds": info["train_seconds"]}
        _add_eval(row, "clean_", clean)
        _add_eval(row, "fgsm_", adv)
        # closed-form checks on the unclipped FGSM step, where they are exact
        _, res = fgsm_examples(recipe, variables, x, y, cfg.eps, clip=False)
        z0 = itrain.predict_logits(recipe.module, variables, x)
        z1 = itrain.predict_logits(recipe.module, variables, np.asarray(res.x_adv).reshape(x.shape))
        change = float(theory.fgsm_linear_logit_change(jnp.asarray(w), cfg.eps))
        ypm = 2.0 * y.astype(np.float32) - 1.0
        closed_loss = np.asarray(theory.adversarial_logistic_loss(jnp.asarray(w), b, jnp.asarray(x.reshape(len(x), -1)),
                                                                  jnp.asarray(ypm), cfg.eps))
        row.update({
            "fgsm_logit_change_closed_form": change,
            "fgsm_logit_change_max_abs_diff": float(np.max(np.abs(np.abs(z1 - z0) - change))),
            "fgsm_loss_vs_closed_form_max_abs_diff": float(np.max(np.abs(np.asarray(res.loss) - closed_loss))),
            "fgsm_unclipped_error": float(np.mean(np.asarray(res.success))),
            "closed_form_adversarial_loss_mean": float(closed_loss.mean()),
        })
        rows[label] = row
        weights[label] = w
    labels = list(variants)
    diff = float(np.max(np.abs(weights[labels[1]] - weights[labels[2]])))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3 * len(weights), 3.2))
    for i, (label, w) in enumerate(weights.items()):
        ax = fig.add_subplot(1, len(weights), i + 1)
        m = np.abs(w).max() or 1.0
        ax.imshow(w.reshape(28, 28), cmap="seismic", vmin=-m, vmax=m)
        ax.set_title(label, fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    run_dir.save_figure("logistic_weights", fig)
    run_dir.save_arrays("logistic_weights", **{f"w{i}": w for i, w in enumerate(weights.values())})
    summary = base_summary(cfg, run_dir, ds, t0)
    summary["dataset_detail"] = d.describe()
    summary.update({
        "classes": list(cfg.classes), "eps": cfg.eps, "alpha": cfg.alpha, "l1": cfg.l1,
        "clip_to_unit_box": cfg.clip, "variants": rows,
        "closed_form_vs_fgsm_training_max_weight_diff": diff,
        "weight_scale": float(np.abs(weights[labels[1]]).max()),
        "paper_plain_clean_error": PAPER_LOGREG_CLEAN_ERROR, "paper_plain_fgsm_error": PAPER_FGSM["logreg"][0],
        "paper_source": PAPER_SOURCE + " §5 and Fig. 2 (3 vs 7, ε = 0.25)",
        "figure": "logistic_weights.png",
    })
    return finish_summary(run_dir, summary, t0)


def format_logistic(s: dict) -> str:
    rows = []
    for label, r in in_order(s["variants"], ["plain"]):
        plain = label == "plain"
        rows.append([label, pct(s["paper_plain_clean_error"]) if plain else "-", pct(r["clean_error"]),
                     pct(s["paper_plain_fgsm_error"]) if plain else "-", pct(r["fgsm_error"]),
                     f"{r['w_l1_norm']:.1f}", f"{r['fgsm_logit_change_max_abs_diff']:.1e}",
                     f"{r['fgsm_loss_vs_closed_form_max_abs_diff']:.1e}"])
    return render_table(s, f"logistic regression {s['classes'][0]} vs {s['classes'][1]}, ε = {s['eps']:g} (Goodfellow §5)",
                        ["training", "clean err paper", "ours", "FGSM err paper", "ours", "‖w‖₁",
                         "|Δz| − ε‖w‖₁", "loss − closed form"], rows,
                        [f"paper: {s['paper_source']}",
                         "last two columns: max abs deviation of the unclipped FGSM step from the closed forms "
                         "(theory.fgsm_linear_logit_change, theory.adversarial_logistic_loss)",
                         f"closed-form vs FGSM-objective training: max weight difference "
                         f"{s['closed_form_vs_fgsm_training_max_weight_diff']:.1e} (weights up to {s['weight_scale']:.2g})",
                         f"weight images: {s['figure']}"])


# =========================================================================== adversarial training


@dataclasses.dataclass(frozen=True)
class GoodfellowAdvTrainingConfig(GoodfellowConfig):
    """Maxout trained plainly, adversarially (``alpha``, ``eps``) and with the two noise controls.

    Presets: ``full`` is the paper's maxout-1600 (4 models × 100 epochs on all 60k images: ~30 h
    on one CPU core, GPU advised); ``medium`` is the same recipe with maxout-240, the model of
    Goodfellow §4 (the paper notes adversarial training needed the larger model), whose ``plain``
    model is exactly ``goodfellow-fgsm --preset full``'s maxout (same config, seed and key)."""

    alpha: float = 0.5

    PRESETS: typing.ClassVar = {"quick": dict(_QUICK, n_train=3000, n_eval=500),
                                "medium": dict(_FULL, preset_name="medium", maxout_units=240, n_eval=0),
                                "full": dict(_FULL, maxout_units=1600, n_eval=0)}
    COST: typing.ClassVar = {"quick": "~1 min CPU",
                             "medium": "~2-3 h on one CPU core (measured 9,936 s of training: the J̃ model 6,302 s on a shared "
                                       "machine, the two noise controls 1,803 + 1,831 s; the plain model is goodfellow-fgsm full's, 16 min)",
                             "full": "~30 h on one CPU core (4 × maxout-1600, 100 epochs; 16x maxout-240's FLOPs); GPU advised"}

    def validate(self) -> None:
        super().validate()
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1] (got {self.alpha})")


@register("goodfellow-adversarial-training", GoodfellowAdvTrainingConfig,
          "Goodfellow §6: maxout with FGSM adversarial training vs plain and noise controls; transfer both ways",
          table=lambda s: format_adv_training(s))
def run_adv_training(cfg: GoodfellowAdvTrainingConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    x, y = _eval_set(cfg, ds)
    variants = {
        "plain": dict(),
        f"fgsm adversarial (α={cfg.alpha:g})": dict(adversarial="fgsm", alpha=cfg.alpha, eps=cfg.eps, clip=cfg.clip),
        "noise ±ε": dict(adversarial="sign_noise", alpha=cfg.alpha, eps=cfg.eps, clip=cfg.clip),
        "noise U(−ε, ε)": dict(adversarial="uniform_noise", alpha=cfg.alpha, eps=cfg.eps, clip=cfg.clip),
    }
    rows, models, adv_x = {}, {}, {}
    for label, kw in variants.items():
        recipe, variables, info = _train(cfg, run_dir, "maxout+" + label, ds, progress=progress, **kw)
        clean = itrain.evaluate(recipe.module, variables, x, y)
        adv, xa = fgsm_evaluation(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
        row = {"train_seconds": info["train_seconds"]}
        _add_eval(row, "clean_", clean)
        _add_eval(row, "fgsm_", adv)
        row.update(label_free_robustness(recipe, variables, x, y, clean.predictions, cfg.eps, clip=cfg.clip,
                                         key=model_key(cfg.seed, f"pgd/{label}")))
        rows[label] = row
        models[label] = (recipe, variables)
        adv_x[label] = xa
    plain, advl = "plain", list(variants)[1]
    transfer = {
        "plain -> adversarially trained": itrain.evaluate(models[advl][0].module, models[advl][1], adv_x[plain], y).error,
        "adversarially trained -> plain": itrain.evaluate(models[plain][0].module, models[plain][1], adv_x[advl], y).error,
    }
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "model": f"maxout {cfg.maxout_units} units × {cfg.maxout_pieces} pieces, 2 layers, dropout 0.2/0.5",
        "eps": cfg.eps, "alpha": cfg.alpha, "clip_to_unit_box": cfg.clip, "n_eval": int(x.shape[0]),
        "variants": rows, "transfer_error": transfer,
        "transfer_definition": "error of the target model on FGSM examples made against the source model",
        "paper": PAPER_ADV_TRAINING, "paper_transfer": PAPER_TRANSFER, "paper_1600_units": PAPER_ADV_TRAINING_1600,
        "paper_source": PAPER_SOURCE + " §6 (maxout; clean errors 240 units, adversarial numbers 1600 units)",
    })
    return finish_summary(run_dir, summary, t0)


def format_adv_training(s: dict) -> str:
    rows = []
    for label, r in in_order(s["variants"], ["plain"]):
        key = label if label in s["paper"] else ("fgsm adversarial (α=0.5)" if label.startswith("fgsm") else label)
        p = s["paper"].get(key, {})
        rows.append([label, pct(p.get("clean_error")), pct(r["clean_error"]), pct(p.get("adversarial_error")),
                     pct(r["fgsm_error"]), pct(p.get("confidence_on_mistakes")), pct(r["fgsm_confidence_on_mistakes"]),
                     pct(r.get("fgsm_predicted_label_error")), pct(r.get("pgd_error"))])
    for k, v in s["transfer_error"].items():
        rows.append([f"transfer {k}", "-", "-", pct(s["paper_transfer"].get(k)), pct(v), "-", "-", "-", "-"])
    steps = next(iter(s["variants"].values())).get("pgd_steps", PGD_STEPS)
    return render_table(s, f"adversarial training of {s['model']}, ε = {s['eps']:g} (Goodfellow §6)",
                        ["training", "clean err paper", "ours", "FGSM err paper", "ours",
                         "conf. on mistakes paper", "ours", "FGSM(ŷ) err", f"PGD-{steps} err"], rows,
                        [f"paper: {s['paper_source']}", "transfer rows: " + s["transfer_definition"],
                         "FGSM(ŷ): FGSM from the model's own prediction, not the true label (no label leaking); "
                         f"PGD-{steps}: L∞, step 2.5ε/{steps}, random start; both scored against the true label"])


# =========================================================================== agreement and rubbish


@dataclasses.dataclass(frozen=True)
class GoodfellowAgreementConfig(GoodfellowConfig):
    """FGSM examples of maxout; agreement of softmax and RBF with maxout's wrong class."""

    PRESETS: typing.ClassVar = {"quick": dict(_QUICK), "full": dict(_FULL)}
    COST: typing.ClassVar = {"quick": "~40 s CPU", "full": "~20 min on one CPU core (trains goodfellow-fgsm's maxout, softmax and RBF; seconds with their params-*.npz)"}


def _three_models(cfg, run_dir, ds, progress):
    return {name: _train(cfg, run_dir, name, ds, progress=progress)[:2] for name in ("maxout", "softmax", "rbf")}


@register("goodfellow-agreement", GoodfellowAgreementConfig,
          "Goodfellow §8: on maxout's FGSM mistakes, how often softmax and RBF predict the same class",
          table=lambda s: format_agreement(s))
def run_agreement(cfg: GoodfellowAgreementConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    x, y = _eval_set(cfg, ds)
    models = _three_models(cfg, run_dir, ds, progress)
    recipe, variables = models["maxout"]
    x_adv, _ = fgsm_examples(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
    preds = {n: itrain.evaluate(r.module, v, x_adv, y).predictions for n, (r, v) in models.items()}
    fooled = preds["maxout"] != y
    rows = {}
    for n in ("softmax", "rbf"):
        rows[n] = {"agreement_with_maxout_on_its_mistakes": float(np.mean(preds[n][fooled] == preds["maxout"][fooled]))
                   if fooled.any() else float("nan"),
                   "error_on_maxout_examples": float(np.mean(preds[n] != y)),
                   "clean_error": itrain.evaluate(models[n][0].module, models[n][1], x, y).error}
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "eps": cfg.eps, "clip_to_unit_box": cfg.clip, "n_eval": int(x.shape[0]),
        "maxout_fgsm_error": float(fooled.mean()),
        "maxout_clean_error": itrain.evaluate(recipe.module, variables, x, y).error,
        "models": rows, "paper_agreement": PAPER_AGREEMENT,
        "agreement_definition": "fraction of maxout's misclassified FGSM examples on which the model predicts "
                                "the same (wrong) class as maxout",
        "paper_source": PAPER_SOURCE + " §8",
    })
    return finish_summary(run_dir, summary, t0)


def format_agreement(s: dict) -> str:
    rows = [[n, pct(s["paper_agreement"][n]), pct(r["agreement_with_maxout_on_its_mistakes"]),
             pct(r["error_on_maxout_examples"]), pct(r["clean_error"])] for n, r in in_order(s["models"], ["softmax", "rbf"])]
    return render_table(s, f"cross-model agreement on maxout's FGSM examples, ε = {s['eps']:g} (Goodfellow §8)",
                        ["model", "agreement paper", "ours", "error on maxout's examples (ours)", "clean err (ours)"],
                        rows, [f"maxout: clean error {pct(s['maxout_clean_error'])}, FGSM error {pct(s['maxout_fgsm_error'])}",
                               "agreement = " + s["agreement_definition"], f"paper: {s['paper_source']}"])


@dataclasses.dataclass(frozen=True)
class GoodfellowRubbishConfig(GoodfellowConfig):
    """``n_rubbish`` samples of N(0, I₇₈₄) classified by maxout, softmax and RBF."""

    n_rubbish: int = 10_000

    PRESETS: typing.ClassVar = {"quick": dict(_QUICK, n_rubbish=2000), "full": dict(_FULL, n_rubbish=10_000)}
    COST: typing.ClassVar = {"quick": "~40 s CPU", "full": "~20 min on one CPU core (trains goodfellow-fgsm's maxout, softmax and RBF; seconds with their params-*.npz)"}

    def validate(self) -> None:
        super().validate()
        require(self.n_rubbish >= 1, f"n_rubbish must be >= 1 (got {self.n_rubbish})")


@register("goodfellow-rubbish", GoodfellowRubbishConfig,
          "Goodfellow §8: N(0, I) rubbish inputs classified with p > 0.5 by maxout, softmax, RBF",
          table=lambda s: format_rubbish(s))
def run_rubbish(cfg: GoodfellowRubbishConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    models = _three_models(cfg, run_dir, ds, progress)
    key = named_keys(cfg.seed, ("rubbish",))["rubbish"]
    xr = np.asarray(jax.random.normal(key, (cfg.n_rubbish, 28, 28), jnp.float32))
    rows = {}
    for n, (r, v) in models.items():
        ev = itrain.evaluate(r.module, v, xr, np.zeros(cfg.n_rubbish, np.int32))
        confident = ev.confidence > 0.5
        rows[n] = {"fraction_confident": float(confident.mean()),
                   "mean_confidence_of_confident": float(ev.confidence[confident].mean()) if confident.any() else float("nan"),
                   "mean_confidence": float(ev.confidence.mean()),
                   "class_histogram": np.bincount(ev.predictions, minlength=10).tolist()}
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "n_rubbish": cfg.n_rubbish, "models": rows, "paper": {k: list(v) for k, v in PAPER_RUBBISH.items()},
        "definition": "rubbish inputs x ~ N(0, I_784) (not clipped); confident = probability of the predicted "
                      "class > 0.5",
        "paper_source": PAPER_SOURCE + " §8",
    })
    return finish_summary(run_dir, summary, t0)


def format_rubbish(s: dict) -> str:
    rows = []
    for n, r in in_order(s["models"], ["maxout", "softmax", "rbf"]):
        p_frac, p_conf = s["paper"][n]
        rows.append([n, pct(p_frac), pct(r["fraction_confident"]), pct(p_conf), pct(r["mean_confidence_of_confident"])])
    return render_table(s, f"rubbish examples: {s['n_rubbish']} samples of N(0, I) (Goodfellow §8)",
                        ["model", "p>0.5 paper", "ours", "mean conf. paper", "ours"], rows,
                        [s["definition"], f"paper: {s['paper_source']}"])
