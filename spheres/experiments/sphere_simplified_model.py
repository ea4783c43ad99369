"""``sphere-simplified-model``: theory only (Gilmer et al. 2018, §4): a model with α = ``a_bad`` on k
of d coordinates and ``a_good`` on the rest; exact and CLT inner-sphere error rates against k/d.

    spheres run sphere-simplified-model --preset quick     # d in {100, 500, 3000}: seconds

Expected: the exact rate and the CLT agree near the middle and part in the tails.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy as np
from matplotlib.figure import Figure

import theory

from ..config import Config, require
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..tables import Table, Tables, fmt_log10
from . import register

HALF = PaperValue("d = 3000, the model looks at 50% of the input: error rate", "~1e-14", "gilmer", "§4",
                  "unverified")


@dataclasses.dataclass(frozen=True)
class SimplifiedConfig(Config):
    """α = ``a_bad`` on k of d coordinates, ``a_good`` on the rest; error rate against k/d."""

    dims: tuple[int, ...] = (100, 500, 1000, 2000, 3000)
    a_bad: float = 1.01
    a_good: float = 0.9
    R: float = 1.3
    num_k: int = 200
    seed: int = 0

    PRESETS: typing.ClassVar = {"quick": dict(dims=(100, 500, 3000), num_k=50),
                                "medium": dict(num_k=100),
                                "paper": dict()}
    COST: typing.ClassVar = {"quick": "seconds", "medium": "seconds", "paper": "seconds"}

    def validate(self) -> None:
        require(all(d >= 2 for d in self.dims) and self.dims, f"dims must be >= 2 (got {self.dims})")
        require(self.R > 1, f"R must be > 1 (got {self.R})")
        require(self.a_bad > 0 and self.a_good > 0, "a_bad and a_good must be positive")
        require(self.num_k >= 2, f"num_k must be >= 2 (got {self.num_k})")


@register("sphere-simplified-model", SimplifiedConfig,
          "theory only (Gilmer §4): error rate of the k-dimensional simplified model, exact vs CLT",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="gilmer")
def run(cfg: SimplifiedConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    curves = {}
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for d in cfg.dims:
        k = np.unique(np.linspace(0, d, cfg.num_k).round().astype(int))
        ex = theory.simplified_exact_error_rate(k, d, cfg.a_bad, cfg.a_good, sphere="inner", R=cfg.R, log=True)
        clt = theory.simplified_clt_error_rate(k, d, cfg.a_bad, cfg.a_good, sphere="inner", R=cfg.R, log=True)
        curves[str(d)] = {"k": k.tolist(), "log10_exact": (ex / np.log(10)).tolist(),
                          "log10_clt": (clt / np.log(10)).tolist()}
        line, = ax.plot(k / d, np.maximum(ex / np.log(10), -300), label=f"exact d={d}")
        ax.plot(k / d, np.maximum(clt / np.log(10), -300), "--", color=line.get_color(), label=f"CLT d={d}")
    ax.set(xlabel="fraction k/d of 'bad' coordinates (alpha = a_bad)", ylabel="log10 inner-sphere error rate",
           title=f"Simplified model: a_bad={cfg.a_bad}, a_good={cfg.a_good}")
    ax.legend(fontsize=7, ncol=2)
    run_dir.save_figure("simplified_model", fig)
    run_dir.save_json("curves", curves)
    half = {str(d): {"log10_exact": float(theory.simplified_exact_error_rate(d // 2, d, cfg.a_bad, cfg.a_good, R=cfg.R, log=True) / np.log(10)),
                     "log10_clt": float(theory.simplified_clt_error_rate(d // 2, d, cfg.a_bad, cfg.a_good, R=cfg.R, log=True) / np.log(10))}
            for d in cfg.dims}
    summary = {"experiment": "sphere-simplified-model", "preset": run_dir.preset, "seed": cfg.seed, "a_bad": cfg.a_bad, "a_good": cfg.a_good,
               "R": cfg.R, "dims": list(cfg.dims), "half_bad": half,
               "wall_seconds": round(time.time() - t0, 2)}
    run_dir.write_summary(summary)
    return summary


def table(s: dict) -> Tables:
    rows = [(d, fmt_log10(s["half_bad"][d]["log10_exact"]), fmt_log10(s["half_bad"][d]["log10_clt"]))
            for d in sorted(s["half_bad"], key=int)]      # JSON keys come back sorted as strings
    return Tables(f"sphere-simplified-model (alpha = {s['a_bad']} on k = d/2 coordinates, {s['a_good']} on "
                  f"the rest; inner sphere)", "", (Table(("d", "exact", "CLT"), rows),))


def paper_rows(s: dict) -> list[PaperRow]:
    ours = s["half_bad"].get("3000")
    return [PaperRow(HALF, (f"exact {fmt_log10(ours['log10_exact'])}, CLT {fmt_log10(ours['log10_clt'])} for "
                            f"a_bad = {s['a_bad']}, a_good = {s['a_good']}") if ours else "d = 3000 not in this run")]
