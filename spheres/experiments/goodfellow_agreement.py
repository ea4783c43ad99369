"""``goodfellow-agreement``: do other models make maxout's mistakes? (Goodfellow et al. 2015, §8).

Trains maxout, softmax regression and a shallow RBF network (the same models as
``goodfellow-fgsm``), makes FGSM examples against maxout at ε = ``eps``, and on the examples that
fool maxout measures how often softmax and the RBF predict the same wrong class.

    spheres run goodfellow-agreement --preset quick     # the shipped Fashion-MNIST sample: ~40 s CPU
    spheres run goodfellow-agreement --preset paper     # all of Fashion-MNIST, maxout-240, 100 epochs

Expected (quick, seed 0): maxout errs on 98.6% of its FGSM examples; on them softmax predicts its
wrong class 67.1% of the time and the RBF 34.3%.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy as np

from ..images.adversarial import fgsm_examples
from ..images.evaluate import evaluate
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Tables, ci_note, in_order, pct_ci
from . import register
from ._goodfellow import CITE, MEDIUM, PAPER_SCALE, QUICK, GoodfellowConfig, eval_set, paper_value, three_models
from ._image import base_summary, finish_summary, load_data, tables

PAPER = {"softmax": paper_value("softmax regression predicts maxout's wrong class on its FGSM examples",
                                "54.6%", "§8"),
         "rbf": paper_value("shallow RBF predicts maxout's wrong class on its FGSM examples", "16.0%", "§8")}


@dataclasses.dataclass(frozen=True)
class AgreementConfig(GoodfellowConfig):
    """FGSM examples of maxout; agreement of softmax and RBF with maxout's wrong class (fields
    shared with every Goodfellow experiment: `GoodfellowConfig`)."""

    # evaluation-only: a finished run re-evaluates with new values, without retraining
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('eps', 'clip', 'n_eval')

    PRESETS: typing.ClassVar = {"quick": dict(QUICK), "medium": dict(MEDIUM), "paper": dict(PAPER_SCALE)}
    COST: typing.ClassVar = {
        "quick": "~40 s CPU",
        "medium": "~5 min CPU (estimate: goodfellow-fgsm medium's maxout, softmax and RBF)",
        "paper": "~20 min on one CPU core (trains goodfellow-fgsm paper's maxout, softmax and RBF)",
    }


@register("goodfellow-agreement", AgreementConfig,
          "Goodfellow §8: on maxout's FGSM mistakes, how often softmax and RBF predict the same class",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="goodfellow")
def run(cfg: AgreementConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    x, y = eval_set(cfg, ds)
    models = three_models(cfg, run_dir, ds, progress=progress)
    recipe, variables = models["maxout"]
    x_adv, _ = fgsm_examples(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
    preds = {n: evaluate(r.module, v, x_adv, y).predictions for n, (r, v) in models.items()}
    fooled = preds["maxout"] != y
    rows = {}
    for n in ("softmax", "rbf"):
        rows[n] = {"agreement_with_maxout_on_its_mistakes": float(np.mean(preds[n][fooled] == preds["maxout"][fooled]))
                   if fooled.any() else float("nan"),
                   "error_on_maxout_examples": float(np.mean(preds[n] != y)),
                   "clean_error": evaluate(models[n][0].module, models[n][1], x, y).error}
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "eps": cfg.eps, "clip_to_unit_box": cfg.clip, "n_eval": int(x.shape[0]),
        "maxout_fgsm_error": float(fooled.mean()),
        "maxout_clean_error": evaluate(recipe.module, variables, x, y).error,
        "models": rows,
        "agreement_definition": "fraction of maxout's misclassified FGSM examples on which the model predicts "
                                "the same (wrong) class as maxout",
    })
    return finish_summary(run_dir, summary, t0)


def _agreement(s: dict, r: dict) -> str:
    """The agreement rate with its interval: over maxout's misclassified FGSM examples, whose number
    is maxout's FGSM error rate times ``n_eval``."""
    return pct_ci(r["agreement_with_maxout_on_its_mistakes"], round(s["maxout_fgsm_error"] * s["n_eval"]))


def table(s: dict) -> Tables:
    n = s["n_eval"]
    rows = [[name, PAPER[name].value if name in PAPER else "-", _agreement(s, r),
             pct_ci(r["error_on_maxout_examples"], n), pct_ci(r["clean_error"], n)]
            for name, r in in_order(s["models"], ["softmax", "rbf"])]
    return tables(s, f"cross-model agreement on maxout's FGSM examples, ε = {s['eps']:g} (Goodfellow §8)",
                  ["model", "agreement paper", "ours", "error on maxout's examples (ours)", "clean err (ours)"], rows,
                  [f"maxout: clean error {pct_ci(s['maxout_clean_error'], n)}, "
                   f"FGSM error {pct_ci(s['maxout_fgsm_error'], n)}",
                   "agreement = " + s["agreement_definition"],
                   f"errors over the first {n} test images; agreement over maxout's "
                   f"{round(s['maxout_fgsm_error'] * n)} misclassified FGSM examples among them",
                   f"paper: {CITE} §8", ci_note()])


def paper_rows(s: dict) -> list[PaperRow]:
    return [PaperRow(PAPER[n], _agreement(s, r), note=s["dataset"])
            for n, r in in_order(s["models"], ["softmax", "rbf"]) if n in PAPER]
