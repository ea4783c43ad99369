"""``goodfellow-rubbish``: confident predictions on Gaussian noise (Goodfellow et al. 2015, §8).

Trains maxout, softmax regression and a shallow RBF network (the same models as
``goodfellow-fgsm``) and classifies ``n_rubbish`` "rubbish" inputs x ~ N(0, I₇₈₄) (not clipped):
the fraction each model assigns to some class with probability > 0.5, and its mean confidence.

    spheres run goodfellow-rubbish --preset quick     # the shipped Fashion-MNIST sample: ~40 s CPU
    spheres run goodfellow-rubbish --preset paper     # all of Fashion-MNIST, maxout-240, 100 epochs

Expected (quick, seed 0): maxout is confident (p > 0.5) on 98.8% of the noise inputs (mean
confidence 96.7%), softmax on 67.5%, the RBF on none.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import jax
import jax.numpy as jnp
import numpy as np

from ..config import require
from ..images.evaluate import evaluate
from ..keys import stream_key
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Tables, ci_note, in_order, pct, pct_ci
from . import register
from ._goodfellow import CITE, MEDIUM, PAPER_SCALE, QUICK, GoodfellowConfig, paper_value, three_models
from ._image import base_summary, finish_summary, load_data, tables

PAPER = {
    "maxout": {"fraction_confident": paper_value("maxout: N(0, I) inputs classified with p > 0.5", "98.35%", "§8"),
               "mean_confidence": paper_value("maxout: mean confidence on those inputs", "92.8%", "§8")},
    "softmax": {"fraction_confident": paper_value("softmax regression: N(0, I) inputs classified with p > 0.5",
                                                  "59.8%", "§8")},
    "rbf": {"fraction_confident": paper_value("shallow RBF: N(0, I) inputs classified with p > 0.5", "0%", "§8")},
}
DEFINITION = "rubbish inputs x ~ N(0, I_784) (not clipped); confident = probability of the predicted class > 0.5"


@dataclasses.dataclass(frozen=True)
class RubbishConfig(GoodfellowConfig):
    """``n_rubbish`` samples of N(0, I₇₈₄) classified by maxout, softmax and RBF (fields shared with
    every Goodfellow experiment: `GoodfellowConfig`)."""

    # evaluation-only: a finished run re-evaluates with new values, without retraining
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('n_rubbish', 'n_eval')

    n_rubbish: int = 10_000

    PRESETS: typing.ClassVar = {"quick": dict(QUICK, n_rubbish=2000), "medium": dict(MEDIUM, n_rubbish=10_000),
                                "paper": dict(PAPER_SCALE, n_rubbish=10_000)}
    COST: typing.ClassVar = {
        "quick": "~40 s CPU",
        "medium": "~5 min CPU (estimate: goodfellow-fgsm medium's maxout, softmax and RBF)",
        "paper": "~20 min on one CPU core (trains goodfellow-fgsm paper's maxout, softmax and RBF)",
    }

    def memory_estimate(self) -> dict[str, int]:
        """Adds the rubbish images: the noise in float32 and a working copy."""
        return {**super().memory_estimate(), "n_rubbish": 2 * 4 * 784 * self.n_rubbish}

    def validate(self) -> None:
        super().validate()
        require(self.n_rubbish >= 1, f"n_rubbish must be >= 1 (got {self.n_rubbish})")


@register("goodfellow-rubbish", RubbishConfig,
          "Goodfellow §8: N(0, I) rubbish inputs classified with p > 0.5 by maxout, softmax, RBF",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="goodfellow")
def run(cfg: RubbishConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    models = three_models(cfg, run_dir, ds, progress=progress)
    xr = np.asarray(jax.random.normal(stream_key(cfg.seed, "rubbish"), (cfg.n_rubbish, 28, 28), jnp.float32))
    rows = {}
    for n, (r, v) in models.items():
        ev = evaluate(r.module, v, xr, np.zeros(cfg.n_rubbish, np.int32))
        confident = ev.confidence > 0.5
        rows[n] = {"fraction_confident": float(confident.mean()),
                   "mean_confidence_of_confident": (float(ev.confidence[confident].mean()) if confident.any()
                                                    else float("nan")),
                   "mean_confidence": float(ev.confidence.mean()),
                   "class_histogram": np.bincount(ev.predictions, minlength=10).tolist()}
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({"n_rubbish": cfg.n_rubbish, "models": rows, "definition": DEFINITION})
    return finish_summary(run_dir, summary, t0)


def _cite(n: str, key: str) -> str:
    p = PAPER.get(n, {}).get(key)
    return p.value if p is not None else "-"


def table(s: dict) -> Tables:
    rows = [[n, _cite(n, "fraction_confident"), pct_ci(r["fraction_confident"], s["n_rubbish"]),
             _cite(n, "mean_confidence"), pct(r["mean_confidence_of_confident"])]
            for n, r in in_order(s["models"], ["maxout", "softmax", "rbf"])]
    return tables(s, f"rubbish examples: {s['n_rubbish']} samples of N(0, I) (Goodfellow §8)",
                  ["model", "p>0.5 paper", "ours", "mean conf. paper", "ours"], rows,
                  [s["definition"], f"paper: {CITE} §8", ci_note()])


def paper_rows(s: dict) -> list[PaperRow]:
    ours = {"fraction_confident": lambda r: pct_ci(r["fraction_confident"], s["n_rubbish"]),
            "mean_confidence": lambda r: pct(r["mean_confidence_of_confident"])}
    return [PaperRow(v, ours[key](s["models"][n]), note=s["dataset"])
            for n, values in PAPER.items() if n in s["models"] for key, v in values.items()]
