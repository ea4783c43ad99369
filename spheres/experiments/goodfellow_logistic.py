"""``goodfellow-logistic``: adversarial training of logistic regression in closed form (Goodfellow et al. 2015, §5).

Logistic regression on two classes (the paper's 3 vs 7 on MNIST; Sandal vs Ankle boot on
Fashion-MNIST, the pair of the same kind and difficulty: `_goodfellow.LOGISTIC_PAIR`), trained four ways from the same initialisation and
minibatch order: plainly; with the closed-form adversarial objective
``α ζ(−y z) + (1 − α) ζ(ε‖w‖₁ − y z)`` (``theory.adversarial_logistic_loss``); with the same
objective through unclipped FGSM (which must give the same weights); with L1 weight decay. For
each: clean and FGSM error, ‖w‖₁, and the unclipped FGSM step checked against the closed forms
(the logit moves by exactly ε‖w‖₁, ``theory.fgsm_linear_logit_change``). Weight images:
``logistic_weights.png``. With ``maxout_l1 > 0`` (every preset: 0.0025) the §5 remark on maxout is
measured too: a maxout network on all ten classes trained plainly and with L1 decay ``maxout_l1``
on its first layer only (same initialisation and order), and their training errors.

    spheres run goodfellow-logistic --preset quick     # the shipped Fashion-MNIST sample: ~30 s CPU
    spheres run goodfellow-logistic --preset paper     # all of Fashion-MNIST, 100 epochs (maxout: ~35 min)

Expected (quick, seed 0, Sandal vs Ankle boot): clean error 4.0%; FGSM error 100% plain, 52.5% with the closed-form adversarial objective
(52.0% through the FGSM objective) and 100% with L1 decay; the unclipped FGSM step matches the
closed forms to float32 round-off (≤ 3e-6) and the two adversarial trainings end within 1.5% of
the weights' scale of each other. Maxout (100 units) on all ten classes: 16.9% training error plain,
23.6% with L1 0.0025 on its first layer.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import jax.numpy as jnp
import numpy as np

import theory

from ..config import require
from ..images import data as idata
from ..images import models as im
from ..images.adversarial import fgsm_evaluation, fgsm_examples
from ..images.evaluate import evaluate, predict_logits
from ..images.plots import weight_images_figure
from ..images.train import settings_for
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Table, Tables, ci_note, in_order, pct_ci
from . import register
from ._goodfellow import CITE, GoodfellowConfig, add_evaluation, logistic_pair, paper_value, train
from ._image import base_summary, finish_summary, load_data, model_key, tables, train_cached

PAPER = {"clean_error": paper_value("logistic regression 3 vs 7: clean error", "1.6%", "§5, Fig. 2"),
         "fgsm_error": paper_value("logistic regression 3 vs 7: FGSM error at ε = 0.25", "99%", "§5, Fig. 2"),
         "l1_stall": paper_value("L1 weight decay 0.0025 on a maxout network's first layer: training error",
                                 "stalls above 5%", "§5")}


@dataclasses.dataclass(frozen=True)
class LogisticConfig(GoodfellowConfig):
    """Logistic regression on two ``classes``: plain, closed-form adversarial training (``alpha``
    mix, ε = ``eps``), the same through the FGSM objective (unclipped), and L1 weight decay ``l1``."""

    # evaluation-only: a finished run re-evaluates with new values, without retraining (maxout_l1:
    # the logistic models are reused and only the two maxout networks are trained)
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('n_eval', 'maxout_l1')

    classes: tuple[int, ...] = ()      # () = the data set's pair: _goodfellow.LOGISTIC_PAIR
    alpha: float = 0.5
    l1: float = 0.0025
    maxout_l1: float = 0.0

    PRESETS: typing.ClassVar = {
        "quick": dict(dataset=idata.SAMPLE, n_train=6000, n_test=1000, epochs=5, batch=50, lr=3e-3,
                      maxout_units=100, maxout_l1=0.0025),
        "medium": dict(epochs=20, batch=100, lr=1e-3, ckpt_every=10, maxout_l1=0.0025),
        "paper": dict(epochs=100, batch=100, lr=1e-3, ckpt_every=10, maxout_l1=0.0025),
    }
    COST: typing.ClassVar = {"quick": "~30 s CPU",
                             "medium": "~7 min CPU (estimate: the logistic models take 15 s; two maxout-240 "
                                       "for 20 epochs the rest)",
                             "paper": "~35 min on one CPU core (estimate: the logistic models take 16 s, "
                                      "two maxout-240 for 100 epochs at 949 s each the rest)"}

    def validate(self) -> None:
        super().validate()
        require(self.classes == () or len(self.classes) == 2 and len(set(self.classes)) == 2 and all(0 <= c <= 9 for c in self.classes),
                f"classes must be empty (the data set's pair) or two different labels in 0..9 (got {self.classes})")
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1] (got {self.alpha})")
        require(self.l1 >= 0, f"l1 must be >= 0 (got {self.l1})")
        require(self.maxout_l1 >= 0, f"maxout_l1 must be >= 0: 0 trains no maxout (got {self.maxout_l1})")


@register("goodfellow-logistic", LogisticConfig,
          "Goodfellow §5: logistic regression, closed-form adversarial training vs L1 decay; FGSM vs closed form",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="goodfellow")
def run(cfg: LogisticConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    classes = logistic_pair(cfg.classes, cfg.dataset)
    d = idata.binary_subset(ds, *classes)
    require(d.x_train.shape[0] >= cfg.batch, f"only {d.x_train.shape[0]} training examples of classes "
                                             f"{classes}; raise n_train")
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
        settings = settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, **kw)
        _, variables, info = train_cached(cfg, run_dir, f"logreg {label}", d.x_train, d.y_train, progress=progress,
                                          recipe=recipe, settings=settings, key=key)
        w = np.asarray(variables["params"]["dense_0"]["kernel"][:, 0])
        b = float(variables["params"]["dense_0"]["bias"][0])
        clean = evaluate(recipe.module, variables, x, y)
        adv, _ = fgsm_evaluation(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
        row = {"train_error": evaluate(recipe.module, variables, d.x_train, d.y_train).error,
               "w_l1_norm": float(np.abs(w).sum()), "bias": b, "train_seconds": info["train_seconds"]}
        add_evaluation(row, "clean_", clean)
        add_evaluation(row, "fgsm_", adv)
        # closed-form checks on the unclipped FGSM step, where they are exact
        _, res = fgsm_examples(recipe, variables, x, y, cfg.eps, clip=False)
        z0 = predict_logits(recipe.module, variables, x)
        z1 = predict_logits(recipe.module, variables, np.asarray(res.x_adv).reshape(x.shape))
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
    maxout = _maxout_l1(cfg, run_dir, ds, progress=progress) if cfg.maxout_l1 else None
    run_dir.save_figure("logistic_weights", weight_images_figure(weights))
    run_dir.save_arrays("logistic_weights", **{f"w{i}": w for i, w in enumerate(weights.values())})
    summary = base_summary(cfg, run_dir, ds, t0)
    summary["dataset_detail"] = d.describe()
    summary.update({
        "classes": list(classes), "eps": cfg.eps, "alpha": cfg.alpha, "l1": cfg.l1,
        "clip_to_unit_box": cfg.clip, "variants": rows,
        "closed_form_vs_fgsm_training_max_weight_diff": float(np.max(np.abs(weights[labels[1]] - weights[labels[2]]))),
        "weight_scale": float(np.abs(weights[labels[1]]).max()),
        "figure": "logistic_weights.png",
        **({"maxout_l1": maxout} if maxout else {}),
    })
    return finish_summary(run_dir, summary, t0)


def _maxout_l1(cfg: LogisticConfig, run_dir: RunDir, ds: idata.ImageDataset, *, progress: bool) -> dict:
    """Goodfellow §5's remark: maxout on all classes, plain and with L1 decay ``cfg.maxout_l1`` on its
    first layer only, from the same initialisation and minibatch order; training and test errors."""
    out = {"l1": cfg.maxout_l1, "l1_layers": 1, "n_train": int(ds.x_train.shape[0]),
           "n_test": int(ds.x_test.shape[0]), "model": f"maxout {cfg.maxout_units} × {cfg.maxout_pieces}"}
    for label, kw in (("plain", {}), ("l1_first_layer", dict(l1=cfg.maxout_l1, l1_layers=1))):
        recipe, variables, info = train(cfg, run_dir, "maxout" + (f"+l1_{cfg.maxout_l1:g}_first" if kw else ""),
                                        ds, progress=progress, **kw)
        out[label] = {"train_error": evaluate(recipe.module, variables, ds.x_train, ds.y_train).error,
                      "test_error": evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
                      "train_seconds": info["train_seconds"]}
    return out


def table(s: dict) -> Tables:
    rows = []
    n = s["dataset_detail"]["test_size"]      # the test images of the two classes
    for label, r in in_order(s["variants"], ["plain"]):
        plain = label == "plain"
        rows.append([label, PAPER["clean_error"].value if plain else "-", pct_ci(r["clean_error"], n),
                     PAPER["fgsm_error"].value if plain else "-", pct_ci(r["fgsm_error"], n),
                     f"{r['w_l1_norm']:.1f}", f"{r['fgsm_logit_change_max_abs_diff']:.1e}",
                     f"{r['fgsm_loss_vs_closed_form_max_abs_diff']:.1e}"])
    return tables(s, f"logistic regression {s['classes'][0]} vs {s['classes'][1]}, ε = {s['eps']:g} (Goodfellow §5)",
                  ["training", "clean err paper", "ours", "FGSM err paper", "ours", "‖w‖₁",
                   "|Δz| − ε‖w‖₁", "loss − closed form"], rows,
                  [f"paper: {CITE} §5 and Fig. 2 (3 vs 7, ε = 0.25)",
                   "last two columns: max abs deviation of the unclipped FGSM step from the closed forms "
                   "(theory.fgsm_linear_logit_change, theory.adversarial_logistic_loss)",
                   f"closed-form vs FGSM-objective training: max weight difference "
                   f"{s['closed_form_vs_fgsm_training_max_weight_diff']:.1e} (weights up to {s['weight_scale']:.2g})",
                   f"weight images: {s['figure']}",
                   f"errors over the {n} test images of the two classes", ci_note()],
                  more=(_maxout_table(s["maxout_l1"]),) if "maxout_l1" in s else ())


def _maxout_table(m: dict) -> Table:
    rows = [[label, pct_ci(m[key]["train_error"], m["n_train"]), pct_ci(m[key]["test_error"], m["n_test"])]
            for label, key in (("plain", "plain"), (f"L1 {m['l1']:g} on the first layer", "l1_first_layer"))]
    return Table(("maxout training", "training error", "test error"), rows,
                 f"{m['model']} on all ten classes: Goodfellow §5 says L1 decay of 0.0025 on a maxout "
                 f"network's first layer made it stall above 5% training error")


def paper_rows(s: dict) -> list[PaperRow]:
    plain = s["variants"].get("plain")
    if plain is None:
        return []
    n = s["dataset_detail"]["test_size"]
    rows = [PaperRow(PAPER["clean_error"], pct_ci(plain["clean_error"], n), note=s["dataset"]),
            PaperRow(PAPER["fgsm_error"], pct_ci(plain["fgsm_error"], n), note=s["dataset"])]
    m = s.get("maxout_l1")
    l1 = next((v for k, v in s["variants"].items() if k.startswith("L1")), None)
    if m is not None:
        rows.append(PaperRow(PAPER["l1_stall"], f"{pct_ci(m['l1_first_layer']['train_error'], m['n_train'])} "
                             f"training error with L1 {m['l1']:g} on the first layer "
                             f"({pct_ci(m['plain']['train_error'], m['n_train'])} without)",
                             note=f"{s['dataset']}; {m['model']}, same initialisation and order"))
    elif l1 is not None and "train_error" in l1:
        rows.append(PaperRow(PAPER["l1_stall"], f"{l1['train_error']:.1%} training error with L1 {s['l1']:g} on "
                             f"logistic regression ({plain['train_error']:.1%} without)",
                             note=f"{s['dataset']}; a different model: the maxout case is not measured"))
    return rows
