"""``szegedy-cross-training``: transfer between models trained on disjoint data (Szegedy et al. 2013, Tables 3-4).

The training set is split into disjoint random halves P₁, P₂ of ``p_size`` images each
(`spheres.images.data.split_p1_p2`). FC100-100-10 and FC123-456-10 train on P₁, FC100-100-10' on
P₂; each model's L-BFGS examples are evaluated on every model as found, with their perturbation
rescaled to stddev ``amplify_to``, and beside Gaussian noise of stddev ``noise_sigma``.

    spheres run szegedy-cross-training --preset quick     # P₁, P₂ of 2,000 sample images: ~40 s CPU
    spheres run szegedy-cross-training --preset paper     # P₁, P₂ of 30,000, 50 epochs, 1000 attacks

Expected (quick, seed 0): test error 20-27% for the three models; 100% on the diagonal; the examples
of one model fool the others 44-69% of the time as found and 47-69% once rescaled to stddev 0.1;
noise of stddev 0.1 errs 22-28% of the time, the clean images 19-25%.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy as np

from ..config import require
from ..images import data as idata
from ..images import models as im
from ..images.adversarial import example_stats, gaussian_noise, lbfgs_examples, scale_perturbation, transfer_matrix
from ..images.evaluate import evaluate
from ..keys import named_keys
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Table, Tables, ci_note, in_order, num, pct_ci
from . import register
from ._image import base_summary, cached_examples, finish_summary, tables, train_cached
from ._szegedy import LbfgsFields, attack_key, paper_value

CROSS_MODELS = (("FC100-100-10", "P1"), ("FC123-456-10", "P1"), ("FC100-100-10'", "P2"))
SCALED = "FC100-100-10 scaled to stddev 0.1"

PAPER = {
    "fc100_distortion": paper_value("FC100-100-10 average minimum distortion", "0.062", "Table 3", "secondary"),
    ("FC100-100-10", "FC123-456-10"): paper_value(
        "error of FC123-456-10 on FC100-100-10's examples", "26.2%", "Table 4", "secondary"),
    ("FC100-100-10", "FC100-100-10'"): paper_value(
        "error of FC100-100-10' on FC100-100-10's examples", "5.9%", "Table 4", "secondary"),
    (SCALED, "FC123-456-10"): paper_value(
        "error of FC123-456-10 on FC100-100-10's examples scaled to stddev 0.1", "98%", "Table 4", "secondary"),
    (SCALED, "FC100-100-10'"): paper_value(
        "error of FC100-100-10' on FC100-100-10's examples scaled to stddev 0.1", "43%", "Table 4", "secondary"),
    "noise": paper_value("error under Gaussian noise of stddev 0.1", "2.6%-2.8%", "Table 4", "secondary"),
}


@dataclasses.dataclass(frozen=True)
class CrossTrainingConfig(LbfgsFields):
    """Szegedy Tables 3-4: models trained on disjoint halves P₁, P₂ of the training set.

    ``p_size``: examples in each of P₁, P₂ (paper: 30,000); ``amplify_to``: the stddev the
    examples' perturbations are scaled to (paper: 0.1); ``noise_sigma``: the noise row's stddev.
    """

    # evaluation-only: a finished run re-evaluates with new values, without retraining
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('n_attack', 'c_rounds', 'lbfgs_maxiter', 'attack_chunk', 'amplify_to', 'noise_sigma')

    p_size: int = 30_000
    amplify_to: float = 0.1
    noise_sigma: float = 0.1

    PRESETS: typing.ClassVar = {
        "quick": dict(dataset=idata.SAMPLE, batch=50, lr=3e-3, p_size=2000, n_test=1000, epochs=4, n_attack=32,
                      c_rounds=5, lbfgs_maxiter=40, attack_chunk=32),
        "medium": dict(p_size=30_000, epochs=10, n_attack=200, c_rounds=8, lbfgs_maxiter=100, attack_chunk=100,
                       ckpt_every=5),
        "paper": dict(p_size=30_000, epochs=50, n_attack=1000, c_rounds=10, lbfgs_maxiter=200, attack_chunk=100,
                      ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~40 s CPU",
                             "medium": "~3 min CPU (estimate: 3 models × 10 epochs on 30k, 200 L-BFGS attacks each)",
                             "paper": "~10 min on 2 CPU cores (measured 502 s)"}

    def validate(self) -> None:
        super().validate()
        require(self.p_size >= self.batch, f"p_size ({self.p_size}) must be >= batch ({self.batch})")
        require(self.n_train == 0, "n_train is not used here: P1/P2 come from the whole training set; set p_size")
        require(self.amplify_to > 0 and self.noise_sigma > 0, "amplify_to and noise_sigma must be positive")


@register("szegedy-cross-training", CrossTrainingConfig,
          "Szegedy Tables 3-4: transfer between models trained on disjoint halves P1, P2",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="szegedy")
def run(cfg: CrossTrainingConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    full = idata.load_dataset(cfg.dataset, cfg.data_dir)
    full = idata.take(full, None, cfg.n_test or None)
    k = named_keys(cfg.seed, ("split", "noise"))
    p1, p2 = idata.split_p1_p2(full, k["split"], cfg.p_size)
    parts = {"P1": p1, "P2": p2}
    x_att, y_att = full.x_test[:cfg.n_attack], full.y_test[:cfg.n_attack]
    models, stats = {}, {}
    for name, part in CROSS_MODELS:
        d = parts[part]
        recipe, variables, info = train_cached(cfg, run_dir, name, d.x_train, d.y_train, progress=progress)
        ex = cached_examples(run_dir, name, lambda: lbfgs_examples(
            recipe, variables, x_att, y_att, key=attack_key(cfg.seed, name),
            c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=cfg.attack_chunk), cfg)
        models[name] = {"recipe": recipe, "variables": variables, "examples": ex}
        stats[name] = {"trained_on": part,
                       "train_error": evaluate(recipe.module, variables, d.x_train, d.y_train).error,
                       "test_error": evaluate(recipe.module, variables, full.x_test, full.y_test).error,
                       "params": im.count_params(variables), "train_seconds": info["train_seconds"],
                       **example_stats(ex)}
    rows = {}
    for name, m in models.items():
        ex = m["examples"]
        rows[name] = (ex["x_adv"], ex["y"], ex["success"])
    for name, m in models.items():
        ex = m["examples"]
        rows[f"{name} scaled to stddev {cfg.amplify_to:g}"] = (
            scale_perturbation(ex["x"], ex["x_adv"], cfg.amplify_to), ex["y"], ex["success"])
    rows[f"noise stddev {cfg.noise_sigma:g}"] = (gaussian_noise(k["noise"], x_att, cfg.noise_sigma), y_att,
                                                 np.ones(y_att.shape, bool))
    rows["clean (no perturbation)"] = (x_att, y_att, np.ones(y_att.shape, bool))
    matrix = transfer_matrix(models, rows)
    summary = base_summary(cfg, run_dir, full, t0)
    summary["dataset_detail"] = {**full.describe(), "subset": f"P1/P2 of {cfg.p_size} each",
                                 "train_size": 2 * cfg.p_size}
    summary.update({
        "models": stats,
        "transfer_error_rate": matrix,
        "amplify_to_stddev": cfg.amplify_to, "noise_stddev": cfg.noise_sigma,
        "transfer_definition": "error rate (prediction != true label) of the column model on the row's "
                               "examples (successful L-BFGS examples of the row model, rescaled, or noise)",
    })
    return finish_summary(run_dir, summary, t0)


def _paper_cell(row: str, col: str) -> str:
    if row.startswith("noise"):
        return f" ({PAPER['noise'].value})"
    p = PAPER.get((row, col))
    return f" ({p.value})" if p is not None else ""


def _cell(rates: dict, col: str) -> str:
    """A transfer error rate with its interval, over the row's ``_count`` examples."""
    return pct_ci(rates[col], rates["_count"])


def table(s: dict) -> Tables:
    names = [n for n, _ in CROSS_MODELS]
    cols = [n for n, _ in in_order(s["models"], names)]
    n_part, n_test = s["dataset_detail"]["train_size"] // 2, s["dataset_detail"]["test_size"]   # P1, P2: half each
    t3 = [[f"{n} (on {r['trained_on']})", pct_ci(r["train_error"], n_part), pct_ci(r["test_error"], n_test),
           num(r["mean_distortion"]) + (f" ({PAPER['fc100_distortion'].value})" if n == "FC100-100-10" else "")]
          for n, r in in_order(s["models"], names)]
    rows = []
    row_order = names + [f"{n} scaled to stddev {s['amplify_to_stddev']:g}" for n in names] + \
        [f"noise stddev {s['noise_stddev']:g}"]
    for row, rates in in_order(s["transfer_error_rate"], row_order):
        rows.append([row] + [_cell(rates, c) + _paper_cell(row, c) for c in cols] + [str(rates["_count"])])
    t4 = Table(("examples \\ model", *cols, "n"), rows,
               "cross-training-set transfer: error of column model (Szegedy Table 4)")
    return tables(s, "models on disjoint halves P1, P2 of the training set (Szegedy Tables 3-4)",
                  ["model", "train err", "test err", "distortion (paper)"], t3,
                  ["ours (paper in parentheses where docs/papers.md gives it);",
                   "paper: Szegedy et al. 2013, Tables 3-4 (MNIST; partly secondary)", ci_note()],
                  caption="models on P1 / P2 (Szegedy Table 3)", more=(t4,))


def paper_rows(s: dict) -> list[PaperRow]:
    m, models = s["transfer_error_rate"], s["models"]
    out = []
    if "FC100-100-10" in models:
        out.append(PaperRow(PAPER["fc100_distortion"], num(models["FC100-100-10"]["mean_distortion"]),
                            note=s["dataset"]))
    for key, v in PAPER.items():
        if isinstance(key, tuple) and key[0] in m and key[1] in m[key[0]]:
            out.append(PaperRow(v, _cell(m[key[0]], key[1]), note=s["dataset"]))
    noise = f"noise stddev {s['noise_stddev']:g}"
    if noise in m:
        ours = ", ".join(f"{c} {_cell(m[noise], c)}" for c in models)
        out.append(PaperRow(PAPER["noise"], ours, note=s["dataset"]))
    return out
