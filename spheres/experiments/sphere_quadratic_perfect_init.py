"""``sphere-quadratic-perfect-init``: the quadratic net started at a perfect solution and trained on a
finite set (Gilmer et al. 2018, §4).

Start with every α inside [1/R², 1] (zero error on both spheres), train on N fixed points, and
track the α leaving the perfect region and the exact, CLT and measured error rates rising.

    spheres run sphere-quadratic-perfect-init --preset quick    # d = 50, h = 100, N = 100: ~1 min CPU
    spheres run sphere-quadratic-perfect-init --preset paper    # d = 500, h = 1000, N = 10^6, 10^6 steps

Expected (quick): the net stops being perfect within the first few hundred steps.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import Literal

import jax

from .. import plots
from ..config import require
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..sphere import models
from ..sphere.quadratic import quadratic_theory
from ..tables import Tables, fmt_log10, key_value
from . import register
from ._sphere import SphereTrainConfig, keys, make_tracker, measure_error_rates, provenance, train_in_run

DRIFT = PaperValue("α leave the perfect region when training on a finite set from a perfect start",
                   "yes", "gilmer", "§4", "unverified")


@dataclasses.dataclass(frozen=True)
class PerfectInitConfig(SphereTrainConfig):
    """Start at a perfect quadratic net, train on a finite set of ``train_size`` points."""

    model: Literal["relu", "quadratic"] = "quadratic"
    train_size: int = 1_000_000

    PRESETS: typing.ClassVar = {
        "quick": dict(d=50, hidden=100, batch=50, steps=10_000, lr=1e-3, chunk_steps=500,
                      ckpt_every=5000, eval_samples=100_000, train_size=100, track_every=500,
                      track_eval_every=2500, track_eval_samples=20_000),
        "medium": dict(d=500, hidden=1000, batch=50, steps=100_000, chunk_steps=1000,
                       ckpt_every=10_000, eval_samples=1_000_000, train_size=10_000,
                       track_every=5000, track_eval_every=25_000),
        "paper": dict(d=500, hidden=1000, batch=50, steps=1_000_000, chunk_steps=1000,
                      ckpt_every=20_000, eval_samples=10_000_000, train_size=1_000_000,
                      track_every=10_000, track_eval_every=100_000),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~10 min CPU",
                             "paper": "~1.5 h on 2 CPU cores"}

    def validate(self) -> None:
        super().validate()
        require(self.train_size >= self.batch, "perfect-init trains on a finite set: train_size >= batch")
        require(self.hidden >= self.d, f"a perfect quadratic net needs hidden >= d (got {self.hidden} < {self.d})")


@register("sphere-quadratic-perfect-init", PerfectInitConfig,
          "quadratic net started at a perfect solution, trained on a finite set (Gilmer §4): "
          "alphas drift out of [1/R^2, 1]", table=lambda s: table(s), paper_rows=lambda s: paper_rows(s),
          paper="gilmer")
def run(cfg: PerfectInitConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    init = models.perfect_quadratic_variables(cfg.d, cfg.hidden, cfg.R, key=keys(cfg.seed)["init"])
    state, timing = train_in_run(cfg, run_dir, progress=progress, extra_metrics=make_tracker(cfg),
                                 init_variables=init)
    t1 = time.time()
    rates = measure_error_rates(cfg, state, progress=progress)
    tracked = [m for m in run_dir.read_metrics() if "alpha_fraction_in_range" in m]
    first_imperfect = next((m["step"] for m in tracked if not m["perfect"]), None)
    th = quadratic_theory(jax.device_get(state.params), cfg.R)
    summary = {"experiment": "sphere-quadratic-perfect-init", "preset": run_dir.preset, "seed": cfg.seed, "d": cfg.d, "hidden": cfg.hidden,
               "R": cfg.R, "train_size": cfg.train_size, "steps": cfg.steps,
               "initial": tracked[0] if tracked else None, "final_theory": th,
               "first_imperfect_step": first_imperfect,
               "error_rate": {k: v.as_dict() for k, v in rates.items()},
               "train_seconds": timing["train_seconds"],
               "wall_seconds": round(timing["train_seconds"] + time.time() - t1, 1)}
    fig = plots.trajectory_figure(tracked, "Perfect initialisation on a finite set")
    if fig is not None:
        run_dir.save_figure("perfect_init", fig)
    run_dir.write_summary(summary)
    return summary


def table(s: dict) -> Tables:
    th, er = s["final_theory"], s["error_rate"]
    rows = [("setting", f"d={s['d']}, h={s['hidden']}, N={s['train_size']:,}, {s['steps']:,} steps from a "
                        f"perfect start"),
            ("alpha in range at start", f"{s['initial']['alpha_fraction_in_range']:.1%}" if s["initial"] else "-"),
            ("alpha in range at end", f"{th['alpha_fraction_in_range']:.1%} ({th['alpha_below']} below, "
                                      f"{th['alpha_above']} above)"),
            ("first step no longer perfect", str(s["first_imperfect_step"])),
            ("exact error inner / outer", f"{fmt_log10(th['log10_exact_inner'])} / {fmt_log10(th['log10_exact_outer'])}"),
            ("CLT error inner / outer", f"{fmt_log10(th['log10_clt_inner'])} / {fmt_log10(th['log10_clt_outer'])}"),
            ("measured errors inner / outer", f"{er['inner']['errors']}/{er['inner']['n']:,} / "
                                              f"{er['outer']['errors']}/{er['outer']['n']:,}")]
    return Tables("sphere-quadratic-perfect-init", provenance(s), (key_value(rows),))


def paper_rows(s: dict) -> list[PaperRow]:
    th = s["final_theory"]
    return [PaperRow(DRIFT, f"first imperfect at step {s['first_imperfect_step']}; "
                            f"{th['alpha_fraction_in_range']:.1%} in range at step {s['steps']:,}")]
