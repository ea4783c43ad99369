"""``goodfellow-fgsm``: error and confidence under FGSM (Goodfellow et al. 2015, §4, §5, §7).

Trains shallow softmax regression, a maxout network, a shallow RBF network (10 classes) and
logistic regression on two classes (MNIST 3 vs 7; Fashion-MNIST Sandal vs Ankle boot), and evaluates each on its own FGSM examples
``x + ε sign(∇ₓJ)`` at ε = ``eps`` (clipped to [0, 1]): error, mean confidence, confidence on
the mistakes; error-vs-ε curves over ``eps_grid`` (figure ``fgsm_error_vs_eps.png``, and a table).
With ``ensemble = K`` (presets: 3 quick, 12 medium and paper) K maxout networks, each from its own
initialisation and minibatch order, are combined by averaging their softmax probabilities and
attacked as one model (`spheres.images.ensemble`), as in the paper's ensemble of twelve.

    spheres run goodfellow-fgsm --preset quick     # the shipped Fashion-MNIST sample: ~60 s CPU
    spheres run goodfellow-fgsm --preset paper     # all of Fashion-MNIST, maxout-240, 100 epochs; 12 of them

Expected (quick, seed 0): at ε = 0.25 softmax errs on 100% (clean 21.2%), maxout on 98.6% (clean
22.1%), the RBF on 86.3% with confidence on its mistakes 30.2% (softmax 86.0%), logistic regression
on Sandal vs Ankle boot (5 vs 9) on 100% (clean 6.0%); the ensemble of 3 maxout networks on 97.2%
of the examples made against it (clean 21.5%) and on 94.7% of member 0's own.
"""

from __future__ import annotations

import dataclasses
import time
import typing

from ..config import require
from ..images import data as idata
from ..images import models as im
from ..images.adversarial import fgsm_evaluation, fgsm_examples
from ..images.ensemble import ensemble_fgsm, ensemble_logits, stack_members
from ..images.evaluate import evaluate, evaluation_from_logits
from ..images.plots import error_curves_figure
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..tables import Table, Tables, ci_note, in_order, pct, pct_ci
from . import register
from ._goodfellow import (CITE, MEDIUM, PAPER_SCALE, QUICK, GoodfellowConfig, add_evaluation, eval_set,
                          logistic_pair,
                          paper_value, train)
from ._image import base_summary, finish_summary, load_data, tables

MODELS = ("softmax", "maxout", "rbf", "logreg")
PAPER = {
    "softmax": {"fgsm_error": paper_value("softmax regression: FGSM error at ε = 0.25", "99.9%", "§4"),
                "confidence": paper_value("softmax regression: mean confidence on its FGSM examples", "79.3%", "§4")},
    "maxout": {"fgsm_error": paper_value("maxout: FGSM error at ε = 0.25", "89.4%", "§4"),
               "confidence": paper_value("maxout: mean confidence on its FGSM examples", "97.6%", "§4")},
    "rbf": {"fgsm_error": paper_value("shallow RBF: FGSM error at ε = 0.25", "55.4%", "§7"),
            "confidence": paper_value("shallow RBF: confidence on its mistakes", "1.2%", "§7")},
    "logreg": {"clean_error": paper_value("logistic regression 3 vs 7: clean error", "1.6%", "§5, Fig. 2"),
               "fgsm_error": paper_value("logistic regression 3 vs 7: FGSM error at ε = 0.25", "99%", "§5, Fig. 2")},
}
ENSEMBLE = PaperValue("ensemble of 12 maxout networks: FGSM error", "91.1%", "goodfellow",
                      "text; section not recorded", "secondary", "MNIST")


@dataclasses.dataclass(frozen=True)
class FgsmConfig(GoodfellowConfig):
    """FGSM at ``eps`` on softmax, maxout, RBF (10 classes) and logistic regression on classes
    ``logreg_classes``; error curves over ``eps_grid`` (fields shared with every Goodfellow
    experiment: `GoodfellowConfig`). ``ensemble``: 0, or the number K >= 2 of maxout networks
    (the maxout above and K − 1 more, each from its own initialisation and order) whose mean
    softmax probability is attacked as one model; changing it on a finished run trains only the
    members it lacks."""

    # evaluation-only: a finished run re-evaluates with new values, without retraining (ensemble:
    # the members already trained are reused)
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('eps', 'eps_grid', 'clip', 'n_eval', 'ensemble')

    eps_grid: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    logreg_classes: tuple[int, ...] = ()      # () = the data set's pair: _goodfellow.LOGISTIC_PAIR
    ensemble: int = 0

    PRESETS: typing.ClassVar = {"quick": dict(QUICK, ensemble=3), "medium": dict(MEDIUM, ensemble=12),
                                "paper": dict(PAPER_SCALE, ensemble=12)}
    COST: typing.ClassVar = {
        "quick": "~60 s CPU",
        "medium": "~1 h CPU (estimate: 12 maxout-240 for 20 epochs on 60k are most of it)",
        "paper": "~3.5 h on one CPU core (estimate from the measured 949 s per maxout-240 for 100 epochs: "
                 "12 of them for the ensemble, and 307 s for the rest)",
    }

    def validate(self) -> None:
        super().validate()
        require(all(e >= 0 for e in self.eps_grid) and len(self.eps_grid) >= 1, "eps_grid must be non-negative values")
        require(self.logreg_classes == () or len(self.logreg_classes) == 2 and len(set(self.logreg_classes)) == 2
                and all(0 <= c <= 9 for c in self.logreg_classes),
                f"logreg_classes must be empty (the data set's pair) or two different labels in 0..9 (got {self.logreg_classes})")
        require(isinstance(self.ensemble, int) and not isinstance(self.ensemble, bool)
                and (self.ensemble == 0 or self.ensemble >= 2),
                f"ensemble must be 0 (none) or a number of maxout networks >= 2 (got {self.ensemble!r})")


@register("goodfellow-fgsm", FgsmConfig,
          "Goodfellow §4, §7: FGSM error and confidence at eps=0.25 for softmax, maxout, logistic regression, RBF",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="goodfellow")
def run(cfg: FgsmConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    pair = logistic_pair(cfg.logreg_classes, cfg.dataset)
    binary = idata.binary_subset(ds, *pair)
    rows, curves = {}, {}
    for name in MODELS:
        d = binary if name == "logreg" else ds
        recipe, variables, info = train(cfg, run_dir, name, d, progress=progress)
        x, y = eval_set(cfg, d) if name != "logreg" else (d.x_test, d.y_test)
        clean = evaluate(recipe.module, variables, x, y)
        adv, _ = fgsm_evaluation(recipe, variables, x, y, cfg.eps, clip=cfg.clip)
        row = {"n_eval": int(x.shape[0]), "train_seconds": info["train_seconds"],
               "params": im.count_params(variables), "trained_on": d.label}
        add_evaluation(row, "clean_", clean)
        add_evaluation(row, "fgsm_", adv)
        rows[name] = row
        curves[name] = [fgsm_evaluation(recipe, variables, x, y, e, clip=cfg.clip)[0].error if e > 0 else clean.error
                        for e in cfg.eps_grid]
    ens = _ensemble(cfg, run_dir, ds, progress=progress) if cfg.ensemble else None
    run_dir.save_figure("fgsm_error_vs_eps", error_curves_figure(cfg.eps_grid, curves, mark=cfg.eps,
                                                                  title=f"FGSM on {ds.name}"))
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "eps": cfg.eps, "clip_to_unit_box": cfg.clip, "models": rows,
        "error_vs_eps": {"eps": list(cfg.eps_grid), **curves},
        "logreg_classes": list(pair),
        **({"ensemble": ens} if ens else {}),
        "confidence_definition": "probability the model gives its predicted class (softmax; exp(score) for "
                                 "the RBF, whose classes are independent; sigmoid for logistic regression)",
    })
    return finish_summary(run_dir, summary, t0)


def _ensemble(cfg: FgsmConfig, run_dir: RunDir, ds: idata.ImageDataset, *, progress: bool) -> dict:
    """Train the ensemble's members (``maxout`` is member 0, already trained) and attack the ensemble:
    its clean error, its error on FGSM examples made against it, and on member 0's own examples."""
    trained = [train(cfg, run_dir, "maxout" if k == 0 else f"maxout#{k}", ds, progress=progress)
               for k in range(cfg.ensemble)]
    module = trained[0][0].module
    members = stack_members([v for _, v, _ in trained])
    x, y = eval_set(cfg, ds)
    ev = lambda xs: evaluation_from_logits(module, ensemble_logits(module, members, xs), y)   # noqa: E731
    clean, adv = ev(x), ev(ensemble_fgsm(module, members, x, y, cfg.eps, clip=cfg.clip))
    single = ev(fgsm_examples(trained[0][0], trained[0][1], x, y, cfg.eps, clip=cfg.clip)[0])
    row = {"members": cfg.ensemble, "n_eval": int(x.shape[0]),
           "member_clean_errors": [evaluate(module, v, x, y).error for _, v, _ in trained],
           "member_train_seconds": [info["train_seconds"] for _, _, info in trained],
           "combination": "mean of the members' softmax probabilities",
           "member0_fgsm_error": single.error}
    add_evaluation(row, "clean_", clean)
    add_evaluation(row, "fgsm_", adv)
    return row


def _cite(name: str, key: str) -> str:
    p = PAPER.get(name, {}).get(key)
    return p.value if p is not None else "-"


def _label(s: dict, name: str) -> str:
    return name + (f" ({s['logreg_classes'][0]} vs {s['logreg_classes'][1]})" if name == "logreg" else "")


def _curves(s: dict) -> Table:
    """The error-vs-ε curves of the figure, each error with its interval over the model's ``n_eval``."""
    names = [n for n, _ in in_order(s["models"], MODELS) if n in s["error_vs_eps"]]
    rows = [[f"{e:g}"] + [pct_ci(s["error_vs_eps"][n][i], s["models"][n]["n_eval"]) for n in names]
            for i, e in enumerate(s["error_vs_eps"]["eps"])]
    return Table(("ε", *(_label(s, n) for n in names)), rows, "FGSM error vs ε (ε = 0: clean error)")


def table(s: dict) -> Tables:
    rows = []
    for name, r in in_order(s["models"], MODELS):
        n = r["n_eval"]
        rows.append([_label(s, name), _cite(name, "clean_error"), pct_ci(r["clean_error"], n),
                     _cite(name, "fgsm_error"), pct_ci(r["fgsm_error"], n),
                     _cite(name, "confidence"), pct(r["fgsm_confidence_on_mistakes"])])
    e, notes = s.get("ensemble"), []
    if e:
        n = e["n_eval"]
        rows.append([f"ensemble of {e['members']} maxout", "-", pct_ci(e["clean_error"], n), ENSEMBLE.value,
                     pct_ci(e["fgsm_error"], n), "-", pct(e["fgsm_confidence_on_mistakes"])])
        errs = e["member_clean_errors"]
        notes.append(f"ensemble: {e['combination']}, attacked as one model; its members' clean errors "
                     f"{pct(min(errs))}–{pct(max(errs))}; on member 0's own FGSM examples the ensemble errs on "
                     f"{pct_ci(e['member0_fgsm_error'], n)}; paper: {ENSEMBLE.where} ({ENSEMBLE.status})")
    return tables(s, f"FGSM at ε = {s['eps']:g} (Goodfellow §4, §7)",
                  ["model", "clean err paper", "ours", "FGSM err paper", "ours",
                   "conf. on mistakes paper", "ours"], rows,
                  [f"paper: {CITE}; softmax/maxout/RBF §4 and §7, logistic regression 3 vs 7 Fig. 2",
                   f"FGSM clipped to [0, 1]: {s['clip_to_unit_box']}; error-vs-ε curves: fgsm_error_vs_eps.png",
                   "confidence = " + s["confidence_definition"],
                   "errors over n test images: "
                   + ", ".join(f"{_label(s, n)} {r['n_eval']}" for n, r in in_order(s["models"], MODELS)),
                   *notes, ci_note()],
                  more=(_curves(s),) if "error_vs_eps" in s else ())


def paper_rows(s: dict) -> list[PaperRow]:
    ours = {"clean_error": lambda r: pct_ci(r["clean_error"], r["n_eval"]),
            "fgsm_error": lambda r: pct_ci(r["fgsm_error"], r["n_eval"]),
            "confidence": lambda r: pct(r["fgsm_confidence_on_mistakes"])}
    rows = [PaperRow(v, ours[key](s["models"][name]), note=s["dataset"])
            for name, values in PAPER.items() if name in s["models"] for key, v in values.items()]
    e = s.get("ensemble")
    if e is None:
        return rows + [PaperRow(ENSEMBLE, "not measured in this run (set ensemble=12: 12 maxout trainings, "
                                          "~3.2 CPU h at the paper preset)")]
    return rows + [PaperRow(ENSEMBLE, pct_ci(e["fgsm_error"], e["n_eval"]),
                            note=f"{s['dataset']}; {e['members']} maxout networks, {e['combination']}")]
