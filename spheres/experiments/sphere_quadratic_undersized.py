"""``sphere-quadratic-undersized``: a quadratic net with half the width a perfect one needs (Gilmer §4).

"A quadratic network with 1000 hidden nodes trained with d = 2000 obtains an estimated
generalization error of 10⁻²¹ and 10⁻⁹ on the inner and outer sphere, despite being only 1/2 the
size required to achieve 0 error." With h < d the α spectrum has d − h exact zeros (the null space of
W), so the ellipsoid Σ αᵢ zᵢ² = 1 is a cylinder and some points of each sphere are always
misclassified; the net can only make that set rare. Trained online with the paper's recipe; the α
spectrum (zeros, and where the non-zero α sit), the CLT and exact error rates are tracked every
``track_every`` steps and the measured rate every ``track_eval_every`` steps.

    spheres run sphere-quadratic-undersized --preset quick    # d = 40, h = 20, 10,000 steps: ~1 min on CPU
    spheres run sphere-quadratic-undersized --preset paper    # d = 2000, h = 1000, 10^6 steps, 10^7 points per sphere

Expected (quick): exactly 20 zero α; error rates of a few percent per sphere, the exact rate inside
the measured rate's 95 % interval. Paper: CLT rates ≈ 1e-21 (inner) and 1e-9 (outer).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

import jax

from ..config import require
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..sphere.quadratic import alpha_spectrum, alphas_of
from ..tables import Table, Tables, fmt_log10, fmt_rate, key_value
from . import _gilmer, register
from ._sphere import (PAPER_RECIPE, QUADRATIC_MEDIUM, QUADRATIC_QUICK, SphereTrainConfig, final_state,
                      make_tracker, run_sphere_training, training_table)

CLT_INNER = PaperValue("estimated (CLT) error rate, inner sphere, d = 2000, h = 1000", "10⁻²¹", "gilmer",
                       "§4", "unverified")
CLT_OUTER = PaperValue("estimated (CLT) error rate, outer sphere, d = 2000, h = 1000", "10⁻⁹", "gilmer",
                       "§4", "unverified")
HALF_SIZE = PaperValue("zero α of a net with h = d/2", "d − h (1/2 the size required for 0 error)",
                       "gilmer", "§4", "verified")


@dataclasses.dataclass(frozen=True)
class UndersizedConfig(SphereTrainConfig):
    model: Literal["relu", "quadratic"] = "quadratic"
    PRESETS: typing.ClassVar = {
        "quick": dict(QUADRATIC_QUICK, d=40, hidden=20, steps=10_000, track_eval_samples=50_000,
                      attack_samples=50, attack_steps=200, worst_case_steps=200),
        "medium": dict(QUADRATIC_MEDIUM, d=400, hidden=200),
        "paper": dict(model="quadratic", hidden=1000, track_every=10_000, track_eval_every=100_000,
                      **{**PAPER_RECIPE, "d": 2000}),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~30 min CPU",
                             "paper": "~0.6 GFLOP per step: several CPU hours; minutes on a GPU"}

    def validate(self) -> None:
        super().validate()
        require(self.model == "quadratic", f"model must be quadratic (got {self.model})")


def make_undersized_tracker(cfg: SphereTrainConfig):
    """`_sphere.make_tracker`'s metrics plus the α spectrum (`alpha_spectrum`) every ``track_every``."""
    base = make_tracker(cfg)
    every = cfg.track_every or cfg.chunk_steps

    def track(state) -> dict:
        out = base(state) if base is not None else {}
        params = jax.device_get(state.params)
        if int(state.step) % every == 0 and float(params["b"]) < 0:
            out.update(alpha_spectrum(alphas_of(params), cfg.R))
        return out

    return track


def trajectory(metrics: list[dict]) -> list[dict]:
    """The tracked steps that have a measured rate, with the theory's rates at the same step."""
    rows = []
    for m in metrics:
        if "measured_inner_errors" in m and "log10_exact_inner" in m:
            rows.append({k: m.get(k) for k in ("step", "alpha_zero", "alpha_nonzero_min",
                                                "alpha_nonzero_median", "alpha_nonzero_max",
                                                "log10_clt_inner", "log10_clt_outer",
                                                "log10_exact_inner", "log10_exact_outer",
                                                "measured_inner_errors", "measured_inner_n",
                                                "measured_outer_errors", "measured_outer_n")})
    return rows


def _measured(m: dict, sphere: str) -> str:
    from theory.binomial import clopper_pearson

    e, n = m[f"measured_{sphere}_errors"], m[f"measured_{sphere}_n"]
    lo, hi = clopper_pearson(e, n, 0.95)
    return fmt_rate({"errors": e, "n": n, "rate": e / n, "lower": float(lo), "upper": float(hi)})


def table(s: dict) -> Tables:
    base = training_table(s)
    rows = []
    sp = s.get("spectrum")
    if sp:
        rows.append(("zero α (|α| ≤ 1e-9 · max α)", f"{sp['alpha_zero']} of {s['d']} (d − h = {s['d'] - s['hidden']})"))
        if sp["alpha_nonzero"]:
            rows.append(("non-zero α min / median / max", f"{sp['alpha_nonzero_min']:.4g} / "
                         f"{sp['alpha_nonzero_median']:.4g} / {sp['alpha_nonzero_max']:.4g}"))
            rows.append(("non-zero α above 1 / below 1/R²", f"{sp['alpha_nonzero_above_1']} / "
                         f"{sp['alpha_nonzero_below']} of {sp['alpha_nonzero']}"))
    tables = list(base.tables) + ([key_value(rows, "α spectrum at the end")] if rows else [])
    traj = s.get("trajectory") or []
    if traj:
        tables.append(Table(
            ("step", "CLT inner", "exact inner", "measured inner", "CLT outer", "exact outer", "measured outer"),
            tuple((f"{m['step']:,}", fmt_log10(m["log10_clt_inner"]), fmt_log10(m["log10_exact_inner"]),
                   _measured(m, "inner"), fmt_log10(m["log10_clt_outer"]), fmt_log10(m["log10_exact_outer"]),
                   _measured(m, "outer")) for m in traj),
            "error rates over training (measured: exact 95 % interval)"))
    return Tables(base.title, base.provenance, tuple(tables), base.notes)


def paper_rows(s: dict) -> list[PaperRow]:
    rows = []
    th, sp = s.get("theory"), s.get("spectrum")
    size = f"d = {s['d']}, h = {s['hidden']}"
    if sp:
        rows.append(PaperRow(HALF_SIZE, f"{sp['alpha_zero']} of {s['d']}", quantity=f"zero α, {size}"))
    if th and th.get("alpha_valid", True):
        traj = [m for m in s.get("trajectory") or [] if m.get("log10_clt_inner") is not None]
        # the paper does not say at which step; the best tracked step (lowest larger-of-the-two CLT rate)
        best = min(traj, key=lambda m: max(m["log10_clt_inner"], m["log10_clt_outer"])) if len(traj) > 1 else None
        for value, sphere in ((CLT_INNER, "inner"), (CLT_OUTER, "outer")):
            note = "" if best is None else (
                f"at the end of training; at the best tracked step, {best['step']:,} (lowest larger-of-the-two "
                f"CLT rate): CLT {fmt_log10(best[f'log10_clt_{sphere}'])}, exact {fmt_log10(best[f'log10_exact_{sphere}'])}")
            rows.append(PaperRow(value, f"CLT {fmt_log10(th[f'log10_clt_{sphere}'])}, exact "
                                        f"{fmt_log10(th[f'log10_exact_{sphere}'])}",
                                 quantity=f"error rate, {sphere} sphere, {size}", note=note))
    return rows + [_gilmer.error_row(s)] + _gilmer.attack_rows(s)


@register("sphere-quadratic-undersized", UndersizedConfig,
          "quadratic net with h = d/2 (Gilmer §4): d − h zero α, CLT / exact / measured error rates",
          table=table, paper_rows=paper_rows, paper="gilmer")
def run(cfg: UndersizedConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    summary = run_sphere_training(cfg, run_dir, progress=progress, extra_metrics=make_undersized_tracker(cfg))
    if summary.get("theory", {}).get("alpha_valid", True) and "theory" in summary:
        summary["spectrum"] = alpha_spectrum(alphas_of(jax.device_get(final_state(cfg, run_dir).params)), cfg.R)
    summary["hidden"] = cfg.hidden
    summary["trajectory"] = trajectory(run_dir.read_metrics())
    run_dir.write_summary(summary)
    return summary
