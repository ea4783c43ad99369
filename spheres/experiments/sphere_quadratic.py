"""``sphere-quadratic``: the quadratic net ŷ = w·Σ(Wx)² + b on the two spheres (Gilmer et al. 2018, §4).

Train online with the paper's recipe, track the α spectrum (the eigenvalues of (w/−b)·WᵀW: the
decision boundary is the ellipsoid Σ αᵢ zᵢ² = 1) and the exact and CLT error rates during training,
then measure the error rate per sphere and attack inner-sphere points on and off the manifold. The
net is perfect (zero error on both spheres) exactly when every α lies in [1/R², 1].

    spheres run sphere-quadratic --preset quick    # d = 50, h = 100, 20,000 steps: ~1 min on CPU
    spheres run sphere-quadratic --preset paper    # d = 500, h = 1000, 10^6 steps, 10^7 points per sphere

Expected (quick): every α in [1/R², 1] (perfect) before the end, exact error rate 0, and no error
among 200,000 points per sphere.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..tables import fmt_log10
from . import _gilmer, register
from ._sphere import (PAPER_RECIPE, QUADRATIC_MEDIUM, QUADRATIC_QUICK, SphereTrainConfig, run_sphere_training,
                      training_table)

ALPHA_ONLINE = PaperValue("α in [1/R², 1] after online training",
                          "100% after ~5·10⁵ steps at h = d = 500 (public reproduction)", "gilmer", "§4",
                          "secondary")
EXACT = PaperValue("exact error rate inner / outer", "— (the paper gives CLT estimates only)", "gilmer",
                   "§4", "verified")


@dataclasses.dataclass(frozen=True)
class QuadraticConfig(SphereTrainConfig):
    model: Literal["relu", "quadratic"] = "quadratic"
    PRESETS: typing.ClassVar = {
        "quick": dict(QUADRATIC_QUICK, d=50, hidden=100, steps=20_000, track_eval_samples=20_000,
                      attack_samples=100, attack_steps=300, worst_case_steps=300),
        "medium": dict(QUADRATIC_MEDIUM, d=500, hidden=1000),
        "paper": dict(model="quadratic", hidden=1000, track_every=5000, track_eval_every=50_000,
                      **PAPER_RECIPE),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~15 min CPU",
                             "paper": "~1 h on 2 CPU cores; minutes on a GPU"}


def paper_rows(s: dict) -> list[PaperRow]:
    rows = []
    th = s.get("theory")
    if th and th.get("alpha_valid", True):
        rows.append(PaperRow(ALPHA_ONLINE, f"{th['alpha_fraction_in_range']:.1%} at step {s['steps']:,}; "
                                           f"first perfect at step {s.get('first_perfect_step')}"))
        rows.append(PaperRow(EXACT, f"{fmt_log10(th['log10_exact_inner'])} / {fmt_log10(th['log10_exact_outer'])}"))
    return rows + [_gilmer.error_row(s)] + _gilmer.attack_rows(s)


@register("sphere-quadratic", QuadraticConfig,
          "quadratic net (Gilmer §4): train, alpha spectrum, error rate per sphere",
          table=training_table, paper_rows=paper_rows, paper="gilmer")
def run(cfg: QuadraticConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    return run_sphere_training(cfg, run_dir, progress=progress)
