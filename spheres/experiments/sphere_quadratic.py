"""Quadratic-network experiments of Gilmer et al. 2018, §4.

* ``sphere-quadratic-finite``: train on a fixed set of N points (paper N = 10⁶), for a sweep of N;
  per N: how many αᵢ fall outside [1/R², 1] (paper: 394 of 500), the CLT, exact and
  importance-sampled Monte Carlo error rates (paper ≈ 1e-11 by the CLT), and the empirical error on
  ``eval_samples`` points per sphere (paper: none in 10⁷).
* ``sphere-quadratic-perfect-init``: start at a perfect solution (every α inside [1/R², 1]), train on
  a finite set, and track α leaving the perfect region and the error rate rising.
* ``sphere-simplified-model``: theory only; α = ``a_bad`` on k coordinates and ``a_good`` on d − k;
  exact and CLT error rates against k for several d.

Commands::

    spheres run sphere-quadratic-finite --preset quick          # N in {100, 1000, 10000}, d = 50
    spheres run sphere-quadratic-finite --preset paper          # d = 500, N = 10^6, 10^6 steps
    spheres run sphere-simplified-model --preset paper
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import Literal

import jax
import numpy as np

from .. import models
from ..config import Config, require
from ..results import RunDir
from . import register
from .sphere_train import (QuadraticConfig, SphereTrainConfig, _fmt_log10, derive_config, keys,
                           run_sub)


def _importance_mc(alpha: np.ndarray, R: float, n: int, key: jax.Array) -> dict:
    import theory

    out = {}
    with jax.enable_x64(True):
        for i, sphere in enumerate(("inner", "outer")):
            lam = theory.error_coefficients(alpha, sphere=sphere, R=R)
            if not np.any(lam > 0):
                out[sphere] = {"rate": 0.0, "lower": 0.0, "upper": 0.0, "log_rate": -np.inf,
                               "method": "exact zero (no coefficient has the error sign)"}
                continue
            est = theory.mc_error_rate(alpha, sphere=sphere, R=R, n=n, key=jax.random.fold_in(key, i),
                                       importance=True)
            out[sphere] = {"rate": est.rate, "lower": est.lower, "upper": est.upper,
                           "log_rate": est.log_rate, "method": est.method}
    return out


def _save_alpha(run_dir: RunDir, state) -> np.ndarray:
    import theory

    p = jax.device_get(state.params)
    with jax.enable_x64(True):
        alpha = np.asarray(theory.alphas(np.asarray(p["W"], np.float64), float(p["w"]), float(p["b"])))
    run_dir.save_arrays("alpha", alpha=alpha)
    return alpha


# -------------------------------------------------------------------------------------------------
# sphere-quadratic-finite
# -------------------------------------------------------------------------------------------------


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


def _finite_row(cfg, n: int, sub: dict, alpha: np.ndarray, mc: dict) -> dict:
    th = sub["theory"]
    return {"train_size": n, "alpha_outside": th["alpha_below"] + th["alpha_above"],
            "alpha_below": th["alpha_below"], "alpha_above": th["alpha_above"], "d": cfg.d,
            "alpha_min": th["alpha_min"], "alpha_max": th["alpha_max"],
            **{f"log10_{kind}_{s}": th[f"log10_{kind}_{s}"] for kind in ("clt", "exact")
               for s in ("inner", "outer")},
            "importance_mc": mc,
            "measured": sub["error_rate"], "final_train_loss": sub["final_train_loss"]}


@register("sphere-quadratic-finite", FiniteConfig,
          "quadratic net on a finite training set (Gilmer §4): alphas outside [1/R^2,1], "
          "CLT vs exact vs importance-sampled MC vs measured error, sweep over N",
          table=lambda s: finite_table(s))
def run_finite(cfg: FiniteConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    rows, sub_wall, rest = [], 0.0, 0.0
    for n in cfg.train_sizes:
        sub_cfg = derive_config(cfg, QuadraticConfig, model="quadratic", train_size=n)
        sub_dir, sub = run_sub(run_dir, f"N{n}", "sphere-quadratic", sub_cfg, progress=progress)
        sub_wall += sub.get("wall_seconds", 0.0)  # the sub-run's total over all its starts
        t_rest = time.time()
        alpha = _save_alpha(sub_dir, _final_state(sub_cfg, sub_dir))
        mc = _importance_mc(alpha, cfg.R, cfg.mc_samples, jax.random.fold_in(keys(cfg.seed)["eval"], n))
        rows.append(_finite_row(cfg, n, sub, alpha, mc))
        run_dir.log_metrics({"step": len(rows), **rows[-1]})
        rest += time.time() - t_rest
    summary = {"experiment": "sphere-quadratic-finite", "d": cfg.d, "R": cfg.R, "hidden": cfg.hidden,
               "steps": cfg.steps, "eval_samples": cfg.eval_samples, "mc_samples": cfg.mc_samples,
               "rows": rows, "wall_seconds": round(sub_wall + rest, 1)}
    _finite_figure(run_dir, summary)
    run_dir.write_summary(summary)
    return summary


def _final_state(cfg: SphereTrainConfig, sub_dir: RunDir):
    """The trained state of a finished sub-run, restored from its last checkpoint."""
    from .. import train
    from ..checkpoint import Checkpoints
    from .sphere_train import make_model

    template = train.create_train_state(make_model(cfg), train.make_optimizer(cfg.optimizer, cfg.lr),
                                        cfg.d, key=keys(cfg.seed)["init"])
    with Checkpoints(sub_dir.ckpt_dir) as ck:
        return ck.restore_or(template)


def _finite_figure(run_dir: RunDir, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    ns = [r["train_size"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(ns, [r["alpha_outside"] for r in rows], "o-")
    ax[0].set(xscale="log", xlabel="training-set size N", ylabel=f"# alpha outside [1/R², 1] (of {summary['d']})",
              title="Quadratic net on a finite set: alphas outside the perfect band")
    for s, mk in (("inner", "o"), ("outer", "s")):
        for kind, ls in (("exact", "-"), ("clt", "--")):
            ys = [r[f"log10_{kind}_{s}"] for r in rows]
            ax[1].plot(ns, ys, ls, marker=mk, label=f"{kind.upper()} {s}")
    ax[1].set(xscale="log", xlabel="training-set size N", ylabel="log10 error rate",
              title="Error rate: exact vs CLT (Prop. 4.1)")
    ax[1].legend()
    run_dir.save_figure("finite_sweep", fig)
    plt.close(fig)


def finite_table(summary: dict) -> str:
    head = ("| N | α outside [1/R²,1] | CLT inner / outer | exact inner / outer | "
            "IS-MC inner / outer | measured errors inner / outer |\n|---|---|---|---|---|---|")
    lines = [f"sphere-quadratic-finite (d={summary['d']}, h={summary['hidden']}, "
             f"{summary['steps']:,} steps)", head]
    for r in summary["rows"]:
        m = r["measured"]
        mc = r["importance_mc"]
        lines.append(
            f"| {r['train_size']:,} | {r['alpha_outside']} of {r['d']} ({r['alpha_below']} below, "
            f"{r['alpha_above']} above) | {_fmt_log10(r['log10_clt_inner'])} / {_fmt_log10(r['log10_clt_outer'])} "
            f"| {_fmt_log10(r['log10_exact_inner'])} / {_fmt_log10(r['log10_exact_outer'])} "
            f"| {_fmt_mc(mc['inner'])} / {_fmt_mc(mc['outer'])} "
            f"| {m['inner']['errors']}/{m['inner']['n']:,} (≤{m['inner']['upper']:.2g}) / "
            f"{m['outer']['errors']}/{m['outer']['n']:,} (≤{m['outer']['upper']:.2g}) |")
    return "\n".join(lines)


def _fmt_mc(e: dict) -> str:
    if e["rate"] == 0 and e["upper"] == 0:
        return "0"
    lr = e["log_rate"] / np.log(10)
    return f"{_fmt_log10(lr)}"


# -------------------------------------------------------------------------------------------------
# sphere-quadratic-perfect-init
# -------------------------------------------------------------------------------------------------


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
          "alphas drift out of [1/R^2, 1]", table=lambda s: perfect_init_table(s))
def run_perfect_init(cfg: PerfectInitConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    init = models.perfect_quadratic_variables(cfg.d, cfg.hidden, cfg.R, key=keys(cfg.seed)["init"])
    from .sphere_train import train_model, make_tracker, measure_error_rates, quadratic_theory

    state, timing = train_model(cfg, run_dir, progress=progress, extra_metrics=make_tracker(cfg),
                                init_variables=init)
    t1 = time.time()
    rates = measure_error_rates(cfg, state, progress=progress)
    metrics = run_dir.read_metrics()
    tracked = [m for m in metrics if "alpha_fraction_in_range" in m]
    first_imperfect = next((m["step"] for m in tracked if not m["perfect"]), None)
    th = quadratic_theory(jax.device_get(state.params), cfg.R)
    summary = {"experiment": "sphere-quadratic-perfect-init", "d": cfg.d, "hidden": cfg.hidden,
               "R": cfg.R, "train_size": cfg.train_size, "steps": cfg.steps,
               "initial": tracked[0] if tracked else None, "final_theory": th,
               "first_imperfect_step": first_imperfect,
               "error_rate": {k: v.as_dict() for k, v in rates.items()},
               "train_seconds": timing["train_seconds"],
               "wall_seconds": round(timing["train_seconds"] + time.time() - t1, 1)}
    trajectory_figure(run_dir, tracked, "Perfect initialisation on a finite set", "perfect_init")
    run_dir.write_summary(summary)
    return summary


def trajectory_figure(run_dir: RunDir, tracked: list[dict], title: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not tracked:
        return
    steps = [m["step"] for m in tracked]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(steps, [100 * m["alpha_fraction_in_range"] for m in tracked])
    ax[0].set(xlabel="training step", ylabel="% of alpha in [1/R², 1]", title=title)
    for s in ("inner", "outer"):  # -inf (a perfect solution: exactly zero error) leaves a gap
        for kind, ls in (("exact", "-"), ("clt", "--")):
            y = np.array([m[f"log10_{kind}_{s}"] for m in tracked], float)
            ax[1].plot(steps, np.where(np.isfinite(y), y, np.nan), ls,
                       label=f"{'exact' if kind == 'exact' else 'CLT'} {s}")
    bound_label = "0 errors measured: 95% upper bound"
    for s, mk in (("inner", "o"), ("outer", "s")):   # measured rates; 0 errors: 95% upper bound ▽
        meas = [m for m in tracked if m.get(f"measured_{s}_n")]
        if meas:
            e = np.array([m[f"measured_{s}_errors"] for m in meas], float)
            n = np.array([m[f"measured_{s}_n"] for m in meas], float)
            st = np.array([m["step"] for m in meas])
            hit = e > 0
            ax[1].plot(st[hit], np.log10(e[hit] / n[hit]), mk, mfc="none", color="k",
                       label=f"measured {s}" if hit.any() else None)
            ax[1].plot(st[~hit], np.log10(1 - 0.05 ** (1 / n[~hit])), "v", color="gray", ms=4,
                       label=bound_label if (~hit).any() else None)
            bound_label = None if (~hit).any() else bound_label
    perfect = np.array([bool(m.get("perfect")) for m in tracked])
    if perfect.any():
        ax[1].fill_between(steps, 0, 1, where=perfect, step="mid", color="green", alpha=0.12,
                           transform=ax[1].get_xaxis_transform(), label="perfect: error exactly 0")
    ax[1].set(xlabel="training step", ylabel="log10 error rate", title="Error rate over training")
    ax[1].legend(fontsize=8)
    run_dir.save_figure(name, fig)
    plt.close(fig)


def perfect_init_table(summary: dict) -> str:
    th = summary["final_theory"]
    er = summary["error_rate"]
    rows = [("setting", f"d={summary['d']}, h={summary['hidden']}, N={summary['train_size']:,}, "
                        f"{summary['steps']:,} steps from a perfect start"),
            ("alpha in range at start", f"{summary['initial']['alpha_fraction_in_range']:.1%}"
             if summary["initial"] else "-"),
            ("alpha in range at end", f"{th['alpha_fraction_in_range']:.1%} ({th['alpha_below']} below, "
                                      f"{th['alpha_above']} above)"),
            ("first step no longer perfect", str(summary["first_imperfect_step"])),
            ("exact error inner / outer", f"{_fmt_log10(th['log10_exact_inner'])} / {_fmt_log10(th['log10_exact_outer'])}"),
            ("CLT error inner / outer", f"{_fmt_log10(th['log10_clt_inner'])} / {_fmt_log10(th['log10_clt_outer'])}"),
            ("measured errors inner / outer", f"{er['inner']['errors']}/{er['inner']['n']:,} / "
                                              f"{er['outer']['errors']}/{er['outer']['n']:,}")]
    w = max(len(a) for a, _ in rows)
    return "sphere-quadratic-perfect-init\n" + "\n".join(f"{a:<{w}}  {b}" for a, b in rows)


# -------------------------------------------------------------------------------------------------
# sphere-simplified-model
# -------------------------------------------------------------------------------------------------


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
                                "paper": dict()}
    COST: typing.ClassVar = {"quick": "seconds", "paper": "seconds"}

    def validate(self) -> None:
        require(all(d >= 2 for d in self.dims) and self.dims, f"dims must be >= 2 (got {self.dims})")
        require(self.R > 1, f"R must be > 1 (got {self.R})")
        require(self.a_bad > 0 and self.a_good > 0, "a_bad and a_good must be positive")
        require(self.num_k >= 2, f"num_k must be >= 2 (got {self.num_k})")


@register("sphere-simplified-model", SimplifiedConfig,
          "theory only (Gilmer §4): error rate of the k-dimensional simplified model, exact vs CLT",
          table=lambda s: simplified_table(s))
def run_simplified(cfg: SimplifiedConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import theory

    t0 = time.time()
    curves = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    plt.close(fig)
    run_dir.save_json("curves", curves)
    half = {str(d): {"log10_exact": float(theory.simplified_exact_error_rate(d // 2, d, cfg.a_bad, cfg.a_good, R=cfg.R, log=True) / np.log(10)),
                     "log10_clt": float(theory.simplified_clt_error_rate(d // 2, d, cfg.a_bad, cfg.a_good, R=cfg.R, log=True) / np.log(10))}
            for d in cfg.dims}
    summary = {"experiment": "sphere-simplified-model", "a_bad": cfg.a_bad, "a_good": cfg.a_good,
               "R": cfg.R, "dims": list(cfg.dims), "half_bad": half,
               "wall_seconds": round(time.time() - t0, 2)}
    run_dir.write_summary(summary)
    return summary


def simplified_table(summary: dict) -> str:
    lines = [f"sphere-simplified-model (alpha = {summary['a_bad']} on k = d/2 coordinates, "
             f"{summary['a_good']} on the rest; inner sphere)", "| d | exact | CLT |", "|---|---|---|"]
    for d in sorted(summary["half_bad"], key=int):       # JSON keys come back sorted as strings
        v = summary["half_bad"][d]
        lines.append(f"| {d} | {_fmt_log10(v['log10_exact'])} | {_fmt_log10(v['log10_clt'])} |")
    return "\n".join(lines)
