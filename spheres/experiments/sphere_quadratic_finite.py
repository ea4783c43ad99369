"""``sphere-quadratic-finite``: the quadratic net trained on a finite set of N points (Gilmer et al. 2018, §4).

For each N of a sweep: train on a fixed set of N points (reshuffled every epoch), then count the
αᵢ outside [1/R², 1] (paper: 394 of 500 at N = 10⁶; the count at every tracked step is kept
too) and compare four error rates: the CLT estimate (paper ≈ 1e-11 at N = 10⁶), the exact rate,
an importance-sampled Monte Carlo estimate and the errors measured on ``eval_samples`` points per
sphere (paper: none in 10⁷).

    spheres run sphere-quadratic-finite --preset quick    # d = 50, N in {100, 1000, 10000}: ~1 min CPU
    spheres run sphere-quadratic-finite --preset paper    # d = 500, N in {10^4, 10^5, 10^6}, 10^6 steps each

Expected (quick): α outside the band and errors at N = 100, fewer as N grows; the exact rate and
the importance-sampled estimate agree.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import Literal

import jax
import numpy as np
from matplotlib.figure import Figure

from ..config import require
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..sphere.bracket import format_bracket
from ..sphere.quadratic import alphas_of, importance_mc
from ..tables import Table, Tables, count_over_seeds, fmt_log10, fmt_rate, mean_interval, pooled_rate
from . import register
from ._sphere import (SphereTrainConfig, derive_config, distance_vs_bound, final_state, keys, provenance,
                      run_sub)
from ._sweep import members_to_run, shard_result

PAPER_D, PAPER_OUTSIDE = 500, 394
OUTSIDE = PaperValue("α outside [1/R², 1] at N = 10⁶", f"{PAPER_OUTSIDE} of {PAPER_D}", "gilmer", "§4", "unverified")
CLT = PaperValue("CLT error estimate at N = 10⁶", "≈ 1e-11", "gilmer", "§4", "unverified")
EXACT = PaperValue("exact error rate", "— (the paper has no exact value)", "gilmer", "§4", "verified")
MEASURED = PaperValue("errors in 10⁷ samples per sphere at N = 10⁶", "none", "gilmer", "§4", "unverified")


@dataclasses.dataclass(frozen=True)
class FiniteConfig(SphereTrainConfig):
    """Quadratic net trained on fixed sets of ``train_sizes`` points (one sub-run per N)."""

    model: Literal["relu", "quadratic"] = "quadratic"
    train_sizes: tuple[int, ...] = (1_000_000,)
    mc_samples: int = 1_000_000          # importance-sampled Monte Carlo samples per sphere

    PRESETS: typing.ClassVar = {
        "quick": dict(d=50, hidden=100, batch=50, steps=20_000, lr=1e-3, chunk_steps=1000,
                      ckpt_every=5000, eval_samples=200_000, train_sizes=(100, 1000, 10_000),
                      mc_samples=100_000, track_every=5000),
        "medium": dict(d=500, hidden=1000, batch=50, steps=100_000, chunk_steps=1000,
                       ckpt_every=10_000, eval_samples=1_000_000,
                       train_sizes=(1000, 10_000, 100_000), track_every=10_000),
        "paper": dict(d=500, hidden=1000, batch=50, steps=1_000_000, chunk_steps=1000,
                      ckpt_every=20_000, eval_samples=10_000_000,
                      train_sizes=(10_000, 100_000, 1_000_000), track_every=20_000),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~30 min CPU",
                             "paper": "~1.5 h per N on 2 CPU cores; minutes on a GPU"}

    def validate(self) -> None:
        super().validate()
        require(len(self.train_sizes) >= 1 and all(n >= self.batch for n in self.train_sizes),
                f"train_sizes must be a list of sizes >= batch ({self.batch}), got {self.train_sizes}")
        require(self.mc_samples >= 1, f"mc_samples must be >= 1 (got {self.mc_samples})")


def outside_over_training(metrics: list[dict]) -> list[list[int]]:
    """``[[step, α outside [1/R², 1]], ...]`` at every step a sub-run tracked its α spectrum, by step
    (a step logged again after a resume keeps its last record)."""
    at = {m["step"]: m["alpha_below"] + m["alpha_above"] for m in metrics if "alpha_below" in m}
    return [[step, at[step]] for step in sorted(at)]


def _row(cfg, n: int, sub: dict, mc: dict) -> dict:
    th = sub["theory"]
    return {"train_size": n, "alpha_outside": th["alpha_below"] + th["alpha_above"],
            "alpha_below": th["alpha_below"], "alpha_above": th["alpha_above"], "d": cfg.d,
            "alpha_min": th["alpha_min"], "alpha_max": th["alpha_max"],
            **{f"log10_{kind}_{s}": th[f"log10_{kind}_{s}"] for kind in ("clt", "exact")
               for s in ("inner", "outer")},
            "importance_mc": mc,
            "measured": sub["error_rate"], "final_train_loss": sub["final_train_loss"]}


def _figure(summary: dict) -> Figure:
    rows = summary["rows"]
    ns = [r["train_size"] for r in rows]
    tracked = [r for r in rows if r.get("alpha_outside_over_training")]
    fig = Figure(figsize=(16.5 if tracked else 11, 4))
    ax = fig.subplots(1, 3 if tracked else 2)
    ax[0].plot(ns, [r["alpha_outside"] for r in rows], "o-")
    ax[0].set(xscale="log", xlabel="training-set size N", ylabel=f"# alpha outside [1/R², 1] (of {summary['d']})",
              title="Quadratic net on a finite set: alphas outside the perfect band")
    for s, mk in (("inner", "o"), ("outer", "s")):
        for kind, ls in (("exact", "-"), ("clt", "--")):
            ax[1].plot(ns, [r[f"log10_{kind}_{s}"] for r in rows], ls, marker=mk, label=f"{kind.upper()} {s}")
    ax[1].set(xscale="log", xlabel="training-set size N", ylabel="log10 error rate",
              title="Error rate: exact vs CLT (Prop. 4.1)")
    ax[1].legend()
    for r in tracked:
        steps, counts = zip(*r["alpha_outside_over_training"])
        ax[2].plot(steps, counts, label=f"N = {r['train_size']:,}")
    if tracked:
        ax[2].set(xlabel="training step", ylabel=f"# alpha outside [1/R², 1] (of {summary['d']})",
                  title="Alphas outside the band during training")
        ax[2].legend()
    return fig


@register("sphere-quadratic-finite", FiniteConfig,
          "quadratic net on a finite training set (Gilmer §4): alphas outside [1/R^2,1], "
          "CLT vs exact vs importance-sampled MC vs measured error, sweep over N",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="gilmer",
          seed_rows=lambda ss: seed_rows(ss))
def run(cfg: FiniteConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    names = [f"N{n}" for n in cfg.train_sizes]
    todo = members_to_run(run_dir, names)
    rows, sub_wall, rest = [], 0.0, 0.0
    for i, n in enumerate(cfg.train_sizes):
        if i not in todo:
            continue
        sub_cfg = derive_config(cfg, model="quadratic", train_size=n)
        sub_dir, sub = run_sub(run_dir, names[i], "sphere-quadratic", sub_cfg, progress=progress)
        if run_dir.shard:
            continue
        sub_wall += sub.get("wall_seconds", 0.0)  # the sub-run's total over all its starts
        t_rest = time.time()
        alpha = alphas_of(final_state(sub_cfg, sub_dir).params)
        sub_dir.save_arrays("alpha", alpha=alpha)
        mc = importance_mc(alpha, cfg.R, cfg.mc_samples, jax.random.fold_in(keys(cfg.seed)["eval"], n))
        rows.append(_row(cfg, n, sub, mc))
        # exact d(E) against Theorem 5.1 at the exact μ(E) (recomputed: cheap, and older sub-runs lack it)
        rows[-1]["distance_vs_bound"] = distance_vs_bound(cfg, alpha)
        on = (sub.get("attacks") or {}).get("on_manifold_nearest", {}).get("bracket")
        rows[-1]["attack_bracket"] = on
        rows[-1]["alpha_outside_over_training"] = outside_over_training(sub_dir.read_metrics())
        run_dir.log_metrics({"step": len(rows), **rows[-1]})
        rest += time.time() - t_rest
    if run_dir.shard:
        return shard_result(run_dir, names, todo)
    summary = {"experiment": "sphere-quadratic-finite", "preset": run_dir.preset, "seed": cfg.seed, "d": cfg.d, "R": cfg.R, "hidden": cfg.hidden,
               "steps": cfg.steps, "batch": cfg.batch, "eval_samples": cfg.eval_samples, "mc_samples": cfg.mc_samples,
               "rows": rows, "wall_seconds": round(sub_wall + rest, 1)}
    run_dir.save_figure("finite_sweep", _figure(summary))
    run_dir.write_summary(summary)
    return summary


def _fmt_mc(e: dict) -> str:
    if e["rate"] == 0 and e["upper"] == 0:
        return "0"
    return fmt_log10(e["log_rate"] / np.log(10))


def table(s: dict) -> Tables:
    rows = []
    for r in s["rows"]:
        m, mc = r["measured"], r["importance_mc"]
        rows.append((f"{r['train_size']:,}",
                     f"{r['alpha_outside']} of {r['d']} ({r['alpha_below']} below, {r['alpha_above']} above)",
                     f"{fmt_log10(r['log10_clt_inner'])} / {fmt_log10(r['log10_clt_outer'])}",
                     f"{fmt_log10(r['log10_exact_inner'])} / {fmt_log10(r['log10_exact_outer'])}",
                     f"{_fmt_mc(mc['inner'])} / {_fmt_mc(mc['outer'])}",
                     f"{fmt_rate(m['inner'])} / {fmt_rate(m['outer'])}"))
    t = Table(("N", "α outside [1/R²,1]", "CLT inner / outer", "exact inner / outer",
               "IS-MC inner / outer", "measured errors inner / outer"), rows)
    dist = Table(("N", "exact d(E) inner / outer", "Theorem 5.1 bound at exact μ(E)", "d(E)/bound",
                  "manifold attack vs exact, inner sphere (same points)"),
                 [(f"{r['train_size']:,}", *_distance_cells(r.get("distance_vs_bound")),
                   format_bracket(r.get("attack_bracket"))) for r in s["rows"]],
                 caption="Distance to the nearest error (exact, on the sphere; ∞: no error exists)")
    parts = (t, dist) if any(r.get("distance_vs_bound") for r in s["rows"]) else (t,)
    during = over_training_table(s)
    return Tables(f"sphere-quadratic-finite (d={s['d']}, h={s['hidden']}, {s['steps']:,} steps)",
                  provenance(s), parts + ((during,) if during else ()))


FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def over_training_table(s: dict) -> Table | None:
    """α outside the band at the last tracked step at or before each of `FRACTIONS` of training,
    one row per N, with the fewest over training and where it was; None for records without the
    trajectory. A fraction that no row tracked since the previous one adds no column."""
    trajs = [(r, r["alpha_outside_over_training"]) for r in s["rows"] if r.get("alpha_outside_over_training")]
    if not trajs:
        return None
    last = lambda traj, f: next(((st, c) for st, c in reversed(traj) if st <= f * s["steps"]), None)  # noqa: E731
    fracs = [f for i, f in enumerate(FRACTIONS)
             if i == 0 or any(last(t, f) != last(t, FRACTIONS[i - 1]) for _, t in trajs)]
    rows = []
    for r, traj in trajs:
        low_step, low = min(traj, key=lambda sc: (sc[1], sc[0]))
        cells = [last(traj, f) for f in fracs]
        rows.append((f"{r['train_size']:,}", *("-" if c is None else str(c[1]) for c in cells),
                     f"{low} at step {low_step:,}"))
    gaps = sorted({b[0] - a[0] for _, t in trajs for a, b in zip(t, t[1:])})
    every = f"; tracked every {gaps[0]:,} steps" if len(gaps) == 1 else ""
    return Table(("N", *(f"step {round(f * s['steps']):,}" for f in fracs), "fewest (first step)"), rows,
                 caption=f"α outside [1/R², 1] (of {s['d']}) during training{every}")


def _distance_cells(dv: dict | None) -> tuple[str, str, str]:
    if not dv:
        return "-", "-", "-"

    def cell(key, fmt):
        return " / ".join("∞" if dv[sp]["d_E"] is None and key != "ratio" else "-" if dv[sp][key] is None
                          else format(dv[sp][key], fmt) for sp in ("inner", "outer"))

    return cell("d_E", ".4f"), cell("cap_bound", ".4f"), cell("ratio", ".3f")


def training_length(s: dict, train_size: int) -> str:
    """How long this N was trained, beside the paper's count, which our sources give without one."""
    steps = s["steps"]
    epochs = None if "batch" not in s else steps * s["batch"] / train_size
    seen = "" if epochs is None else f" = {epochs:,.0f} epochs" if epochs >= 10 else f" = {epochs:.3g} epochs"
    return (f"after {steps:,} steps{seen}; the paper's training length for its finite-set run is not "
            f"stated in our sources")


def first_at_paper_count(row: dict) -> int | None:
    """The first tracked step after the start at which at most the paper's 394 of 500 α lay outside
    the band (the paper's d only; None if never, or without a trajectory)."""
    traj = row.get("alpha_outside_over_training")
    if not traj or row["d"] != PAPER_D:
        return None
    return next((step for step, count in traj if step > 0 and count <= PAPER_OUTSIDE), None)


def _paper_count_note(s: dict, rows: list[dict]) -> str:
    """Where each run's count first met the paper's: the training length at which ours reads 394."""
    if rows[0]["d"] != PAPER_D or not all(r.get("alpha_outside_over_training") for r in rows):
        return ""
    steps = [first_at_paper_count(r) for r in rows]
    each = ", ".join("never" if t is None else f"step {t:,} = {t * s['batch'] / r['train_size']:.3g} epochs"
                     for t, r in zip(steps, rows))
    return f"; first ≤ {PAPER_OUTSIDE} at a tracked step: {each}"


def paper_rows(s: dict) -> list[PaperRow]:
    out = []
    for r in s["rows"]:
        n = f"N = {r['train_size']:,}"
        m = r["measured"]
        out += [PaperRow(OUTSIDE, f"{r['alpha_outside']} of {r['d']}", quantity=f"{n}: α outside [1/R², 1]",
                         note=training_length(s, r["train_size"]) + _paper_count_note(s, [r])),
                PaperRow(CLT, f"{fmt_log10(r['log10_clt_inner'])} / {fmt_log10(r['log10_clt_outer'])}",
                         quantity=f"{n}: CLT error estimate (inner / outer)"),
                PaperRow(EXACT, f"{fmt_log10(r['log10_exact_inner'])} / {fmt_log10(r['log10_exact_outer'])}",
                         quantity=f"{n}: exact error rate (inner / outer)"),
                PaperRow(MEASURED, f"inner {fmt_rate(m['inner'])}, outer {fmt_rate(m['outer'])}",
                         quantity=f"{n}: errors in {m['inner']['n']:,} samples per sphere")]
    return out


def seed_rows(summaries: list[dict]) -> list[PaperRow]:
    """For every N the records share: α outside the band as a mean over seeds with the t interval
    across seeds (`spheres.tables.count_over_seeds`), the CLT and exact rates as means of their log10
    over seeds, and the measured errors pooled over the seeds' disjoint samples
    (`spheres.tables.pooled_rate`)."""
    seeds = [s["seed"] for s in summaries]
    by_n = [{r["train_size"]: r for r in s["rows"]} for s in summaries]
    out = []
    for n in sorted(set.intersection(*(set(b) for b in by_n))):
        rs = [b[n] for b in by_n]
        q = f"N = {n:,}"
        out.append(PaperRow(OUTSIDE, count_over_seeds([r["alpha_outside"] for r in rs], seeds, rs[0]["d"]),
                            quantity=f"{q}: α outside [1/R², 1]",
                            note=training_length(summaries[0], n) + _paper_count_note(summaries[0], rs)))
        for value, kind in ((CLT, "clt"), (EXACT, "exact")):
            out.append(PaperRow(value, " / ".join(_log10_over_seeds([r[f"log10_{kind}_{sp}"] for r in rs])
                                                  for sp in ("inner", "outer")) + f" over {len(rs)} seeds",
                                quantity=f"{q}: {kind.upper() if kind == 'clt' else kind} error rate (inner / outer), "
                                         f"geometric mean over seeds [t interval of log10]"))
        pooled = {sp: pooled_rate([r["measured"][sp] for r in rs]) for sp in ("inner", "outer")}
        out.append(PaperRow(MEASURED, f"inner {fmt_rate(pooled['inner'])}, outer {fmt_rate(pooled['outer'])}",
                            quantity=f"{q}: errors in {rs[0]['measured']['inner']['n']:,} samples per sphere, "
                                     f"pooled over {len(rs)} seeds"))
    return out


def _log10_over_seeds(values: list[float]) -> str:
    """The geometric mean ``10^m [10^lo, 10^hi]`` of per-seed rates from their log10s, with the t
    interval of the log10s cut at a rate of 1 (``0 for some seed`` if a rate is exactly zero)."""
    if any(v == -np.inf for v in values):
        return "0 for some seed"
    m, lo, hi = mean_interval(values)
    return f"{fmt_log10(m)} [{fmt_log10(lo)}, {fmt_log10(min(hi, 0.0))}]"
