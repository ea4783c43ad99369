"""Geometry experiments of Gilmer et al. 2018: dimension sweep and error rate vs distance (§3, §5).

* ``sphere-dimension-sweep``: the ReLU recipe for d from 2 to 500 at a matched budget; per d the
  measured error rate (exact bounds) and whether the manifold attack finds errors; the smallest d
  where errors are found (paper: around 60, secondary).
* ``sphere-error-vs-distance``: the paper's central figure. Models × training-set sizes, measured at
  several steps during training: μ(E) on the inner sphere (Clopper–Pearson interval) against d(E)
  from the nearest-error manifold attack, beside Theorem 5.1's exact cap bound, its asymptotic form,
  and *measured* caps: E an actual cap of known measure, attacked the same way, which checks the
  attack as a distance estimator against the cap's exact d(E).

Commands::

    spheres run sphere-dimension-sweep --preset quick
    spheres run sphere-error-vs-distance --preset medium       # d = 500, reduced budget
"""

from __future__ import annotations

import dataclasses
import time
import typing

import jax
import jax.numpy as jnp
import numpy as np

import attacks

from .. import data as sdata
from .. import evaluate, train
from ..config import require
from ..results import RunDir
from . import register
from .manifold import mean_distance_to_error, nearest_on_manifold
from .sphere_train import (ReluConfig, SphereTrainConfig, _batch_logits_for, derive_config, keys,
                           run_sub, train_model)


# -------------------------------------------------------------------------------------------------
# sphere-dimension-sweep
# -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DimensionSweepConfig(SphereTrainConfig):
    dims: tuple[int, ...] = (2, 5, 10, 20, 40, 60, 80, 100, 200, 500)

    PRESETS: typing.ClassVar = {
        "quick": dict(dims=(2, 10, 40), widths=(64, 64), steps=1000, chunk_steps=500, ckpt_every=500,
                      lr=1e-3, eval_samples=20_000, attack_samples=50, attack_steps=200,
                      worst_case_steps=100),
        "medium": dict(dims=(2, 5, 10, 20, 40, 60, 80, 100, 200, 500), widths=(1000, 1000),
                       steps=20_000, chunk_steps=1000, ckpt_every=10_000, eval_samples=1_000_000,
                       attack_samples=200, attack_steps=1000, worst_case_steps=300),
        "paper": dict(dims=(2, 5, 10, 20, 40, 60, 80, 100, 200, 500), widths=(1000, 1000),
                      steps=1_000_000, chunk_steps=1000, ckpt_every=20_000, eval_samples=10_000_000,
                      attack_samples=1000),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~1 h on 2 CPU cores",
                             "paper": "~15 h on 2 CPU cores; ~1 h on one GPU"}

    def validate(self) -> None:
        super().validate()
        require(len(self.dims) >= 1 and all(d >= 2 for d in self.dims),
                f"dims must be integers >= 2, got {self.dims}")


@register("sphere-dimension-sweep", DimensionSweepConfig,
          "ReLU recipe for d from 2 to 500 (Gilmer §3): error rate and manifold-attack errors per d",
          table=lambda s: dimension_table(s))
def run_dimension_sweep(cfg: DimensionSweepConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    rows, sub_wall = [], []
    for d in cfg.dims:
        sub_cfg = derive_config(cfg, ReluConfig, model="relu", d=d)
        _, s = run_sub(run_dir, f"d{d}", "sphere-relu", sub_cfg, progress=progress)
        sub_wall.append(s.get("wall_seconds", 0.0))
        a = s.get("attacks", {})
        er = s["error_rate"]
        found = a.get("on_manifold_nearest", {}).get("found", 0)
        rows.append({"d": d, "error_rate": er, "attack_found": found,
                     "attack_points": a.get("n_correct", a.get("n_points", 0)),   # correct starts
                     "attack_mean_distance": a.get("on_manifold_nearest", {}).get("distance", {}).get("mean"),
                     "worst_case_success": a.get("worst_case", {}).get("success"),
                     "errors_found": bool(er["inner"]["errors"] + er["outer"]["errors"] + found
                                          + a.get("start_errors", 0) > 0)})
        run_dir.log_metrics({"step": len(rows), **rows[-1]})
    t_rest = time.time()
    first = next((r["d"] for r in rows if r["errors_found"]), None)
    summary = {"experiment": "sphere-dimension-sweep", "rows": rows, "smallest_d_with_errors": first,
               "steps": cfg.steps, "widths": list(cfg.widths),
               # every sub-run's own total (summed over its starts), not only this start's
               "wall_seconds": round(sum(sub_wall) + time.time() - t_rest, 1)}
    _dimension_figure(run_dir, summary)
    run_dir.write_summary(summary)
    return summary


def _dimension_figure(run_dir, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    ds = [r["d"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, mk in (("inner", "o"), ("outer", "s")):
        rate = [r["error_rate"][s]["rate"] for r in rows]
        up = [r["error_rate"][s]["upper"] for r in rows]
        ax.plot(ds, up, mk + ":", alpha=0.5, label=f"{s}: 95% upper bound")
        ax.plot(ds, [max(v, 1e-9) for v in rate], mk + "-", label=f"{s}: measured (0 drawn at 1e-9)")
    ax.set(xscale="log", yscale="log", xlabel="input dimension d", ylabel="error rate",
           title=f"ReLU {summary['widths']} after {summary['steps']:,} steps: error rate vs d")
    ax.legend(fontsize=8)
    run_dir.save_figure("dimension_sweep", fig)
    plt.close(fig)


def dimension_table(summary: dict) -> str:
    lines = [f"sphere-dimension-sweep (ReLU {summary['widths']}, {summary['steps']:,} steps); "
             f"smallest d with errors found: {summary['smallest_d_with_errors']}",
             "| d | inner errors (95% upper) | outer errors (95% upper) | manifold attack found | mean distance |",
             "|---|---|---|---|---|"]
    for r in summary["rows"]:
        e = r["error_rate"]
        md = r["attack_mean_distance"]
        lines.append(f"| {r['d']} | {e['inner']['errors']}/{e['inner']['n']:,} ({e['inner']['upper']:.2g}) | "
                     f"{e['outer']['errors']}/{e['outer']['n']:,} ({e['outer']['upper']:.2g}) | "
                     f"{r['attack_found']}/{r['attack_points']} | {'-' if md is None else f'{md:.4f}'} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------
# sphere-error-vs-distance
# -------------------------------------------------------------------------------------------------

MODEL_SPECS = {"quad.w1000": ("quadratic", (), 1000), "relu.w1000.2": ("relu", (1000, 1000), 0),
               "relu.w2000.8": ("relu", (2000,) * 8, 0)}


@dataclasses.dataclass(frozen=True)
class ErrorDistanceConfig(SphereTrainConfig):
    models: tuple[str, ...] = ("quad.w1000", "relu.w1000.2", "relu.w2000.8")
    train_sizes: tuple[int, ...] = (1000, 3000, 10_000, 30_000, 100_000)
    measure_every: int = 10_000      # steps between (mu(E), d(E)) measurements during training
    measure_eval: int = 100_000      # inner-sphere points for mu(E)
    measure_attack: int = 200        # inner-sphere points attacked for d(E)
    cap_mus: tuple[float, ...] = (0.3, 0.1, 0.03, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    paper_sizes: bool = True         # the paper's widths per model name; False: use widths / hidden

    PRESETS: typing.ClassVar = {
        "quick": dict(d=50, models=("quad.w1000", "relu.w1000.2"), hidden=100, widths=(64, 64),
                      train_sizes=(100, 1000), steps=1000, chunk_steps=250, ckpt_every=500,
                      lr=1e-3, measure_every=500, measure_eval=20_000, measure_attack=40,
                      attack_steps=300, cap_mus=(0.1, 1e-2, 1e-3), attack_samples=0,
                      eval_samples=1000, paper_sizes=False),
        # the paper's three architectures at d = 500, three training-set sizes, 5000 steps, two
        # measurements each: ~45 min on 2 CPU cores, most of it the width-2000 depth-8 net
        "medium": dict(d=500, models=("quad.w1000", "relu.w1000.2", "relu.w2000.8"),
                       train_sizes=(1000, 10_000, 100_000), steps=5000, chunk_steps=500,
                       ckpt_every=2500, measure_every=2500, measure_eval=100_000,
                       measure_attack=100, attack_steps=500, attack_samples=0, eval_samples=1000),
        "paper": dict(d=500, train_sizes=(1000, 3000, 10_000, 30_000, 100_000), steps=1_000_000,
                      chunk_steps=1000, ckpt_every=20_000, measure_every=100_000,
                      measure_eval=1_000_000, measure_attack=500, attack_samples=0, eval_samples=1000),
    }
    COST: typing.ClassVar = {"quick": "~2 min CPU", "medium": "~45 min on 2 CPU cores",
                             "paper": "~days on 2 CPU cores; ~1 day on one GPU"}

    def validate(self) -> None:
        super().validate()
        require(all(m in MODEL_SPECS for m in self.models),
                f"models must be among {', '.join(MODEL_SPECS)}, got {self.models}")
        require(all(n >= self.batch for n in self.train_sizes), "train_sizes must be >= batch")
        require(self.measure_every >= self.chunk_steps and self.measure_every % self.chunk_steps == 0,
                "measure_every must be a multiple of chunk_steps")
        require(self.measure_eval >= 1 and self.measure_attack >= 1, "measure_eval, measure_attack >= 1")
        require(all(0 < m < 0.5 for m in self.cap_mus), "cap_mus must lie in (0, 0.5)")


def measure_mu_and_distance(model, variables, *, d: int, key: jax.Array, n_eval: int, n_attack: int,
                            step_size: float, num_steps: int) -> dict:
    """μ(E) on the inner sphere (exact interval) and d(E) by the nearest-error manifold attack."""
    k_eval, k_att = jax.random.split(key)
    mu = evaluate.sphere_error_rate(_batch_logits_for(model), variables, key=k_eval, d=d, radius=1.0,
                                    label=0, n=n_eval, progress=False)
    x = sdata.sample_sphere(k_att, n_attack, d, 1.0)
    res = nearest_on_manifold(model, variables, x, 0, step_size=step_size, num_steps=num_steps)
    dist = mean_distance_to_error(res, x, model, variables, 0)
    return {"mu": mu.rate, "mu_lower": mu.lower, "mu_upper": mu.upper, "mu_errors": mu.errors,
            "mu_n": mu.n, **dist}


def _cap_logit(t, x):
    """A 'model' whose inner-sphere error set is the cap {x₁ > t} (positive logit = outer)."""
    return x[0] - t


def measured_caps(mus, d: int, *, key: jax.Array, n: int, step_size: float, num_steps: int) -> list[dict]:
    """Attack actual caps of known measure; compare the attack's d(E) with the exact cap distance."""
    import theory

    out = []
    for i, mu in enumerate(mus):
        t = float(theory.cap_threshold(mu, d))
        x = sdata.sample_sphere(jax.random.fold_in(key, i), n, d, 1.0)
        y = jnp.zeros((n,), jnp.int32)
        res = attacks.sphere_pgd(_cap_logit, x, y, step_size=step_size, num_steps=num_steps,
                                 mode="nearest", params=jnp.asarray(t, x.dtype))
        start_err = np.asarray(x[:, 0] > t)
        ok = start_err | np.asarray(res.success)
        dist = np.where(start_err, 0.0, np.asarray(res.distance))
        # the exact distance of each sampled point to the cap, for a per-sample comparison
        phi = np.arccos(np.clip(np.asarray(x[:, 0], np.float64), -1, 1))
        exact_each = np.where(phi > np.arccos(t), 2 * np.sin((phi - np.arccos(t)) / 2), 0.0)
        out.append({"mu": mu, "threshold": t, "d_E_attack": float(dist.mean()),
                    "d_E_exact_same_points": float(exact_each.mean()),
                    "d_E_theory": float(theory.cap_distance_bound(mu, d)),
                    "max_abs_gap_per_point": float(np.abs(dist - exact_each)[ok].max()) if ok.any() else None,
                    "attack_failed": int((~ok).sum()), "n": n})
    return out


@register("sphere-error-vs-distance", ErrorDistanceConfig,
          "the central figure (Gilmer §5): mu(E) vs d(E) for trained models, caps and Theorem 5.1",
          table=lambda s: error_distance_table(s))
def run_error_vs_distance(cfg: ErrorDistanceConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    points, train_seconds = [], 0.0
    for mname in cfg.models:
        kind, widths, hidden = MODEL_SPECS[mname]
        for n in cfg.train_sizes:
            changes = dict(model=kind, train_size=n, attack_samples=0, track_every=0, track_eval_every=0)
            if cfg.paper_sizes:
                changes.update(widths=widths) if kind == "relu" else changes.update(hidden=hidden)
            sub_cfg = derive_config(cfg, SphereTrainConfig, **changes)
            sub_dir = RunDir.open(run_dir.path / f"{mname}-N{n}", "sphere-train", sub_cfg)
            key = jax.random.fold_in(keys(cfg.seed)["attack"], n)

            def measure(state, _mname=mname, _n=n):
                step = int(state.step)
                if step == 0 or step % cfg.measure_every:
                    return {}
                m = measure_mu_and_distance(state.model, train.variables_of(state), d=cfg.d,
                                            key=jax.random.fold_in(key, step), n_eval=cfg.measure_eval,
                                            n_attack=cfg.measure_attack, step_size=cfg.attack_step_size,
                                            num_steps=cfg.attack_steps)
                return {"measure": m}

            _, timing = train_model(sub_cfg, sub_dir, progress=progress, extra_metrics=measure)
            train_seconds += timing["train_seconds"]  # measurements included, summed over starts
            for rec in sub_dir.read_metrics():
                if "measure" in rec:
                    points.append({"model": mname, "train_size": n, "step": rec["step"], **rec["measure"]})
            run_dir.log_metrics({"step": len(points), "model": mname, "train_size": n})
    t_rest = time.time()
    caps = measured_caps(cfg.cap_mus, cfg.d, key=keys(cfg.seed)["eval"], n=cfg.measure_attack,
                         step_size=cfg.attack_step_size, num_steps=cfg.attack_steps)
    summary = {"experiment": "sphere-error-vs-distance", "d": cfg.d, "models": list(cfg.models),
               "train_sizes": list(cfg.train_sizes), "steps": cfg.steps, "points": points, "caps": caps,
               "wall_seconds": round(train_seconds + time.time() - t_rest, 1)}
    _error_distance_figure(run_dir, summary)
    run_dir.write_summary(summary)
    return summary


def _error_distance_figure(run_dir, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import theory

    d = summary["d"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    mus = np.logspace(-8, np.log10(0.99), 200)
    with jax.enable_x64(True):
        ax.plot(mus, theory.cap_distance_bound(mus, d), "k-", label="Theorem 5.1: exact cap bound")
        ax.plot(mus, np.asarray(theory.asymptotic_distance_bound(mus, d)), "k--",
                label="asymptotic Φ⁻¹(1−μ)/√d")
    caps = summary["caps"]
    ax.plot([c["mu"] for c in caps], [c["d_E_attack"] for c in caps], "D", color="gray", mfc="none",
            label="measured caps (attack)")
    for m, mk in zip(summary["models"], "os^v"):
        pts = [p for p in summary["points"] if p["model"] == m and p["mu_errors"] > 0]
        if pts:
            mu = np.array([p["mu"] for p in pts])
            xerr = np.array([[p["mu"] - p["mu_lower"] for p in pts], [p["mu_upper"] - p["mu"] for p in pts]])
            ax.errorbar(mu, [p["d_E"] for p in pts], xerr=xerr, fmt=mk, ms=5, alpha=0.8, label=m)
    ax.set(xscale="log", xlabel="μ(E): inner-sphere error rate", ylabel="d(E): mean L2 distance to nearest error",
           title=f"Error rate vs distance to the nearest error (d = {d})", ylim=(0, None))
    ax.legend(fontsize=8)
    run_dir.save_figure("error_vs_distance", fig)
    plt.close(fig)


# Below this cap bound (μ(E) → 1: nearly every point is itself an error) d(E)/bound is 0/0 noise.
RATIO_MIN_BOUND = 1e-3


def error_distance_table(summary: dict) -> str:
    import theory

    d = summary["d"]
    lines = [f"sphere-error-vs-distance (d={d}); models: {', '.join(summary['models'])}",
             "| model | N | step | μ(E) [95% CI] | d(E) attack | cap bound at μ(E) | d(E)/bound |",
             "|---|---|---|---|---|---|---|"]
    for p in summary["points"]:
        if p["mu_errors"] == 0:
            lines.append(f"| {p['model']} | {p['train_size']:,} | {p['step']:,} | 0/{p['mu_n']:,} (≤{p['mu_upper']:.2g}) | "
                         f"{p['d_E']:.4f} | - | - |")
            continue
        b = float(theory.cap_distance_bound(p["mu"], d))
        ratio = f"{p['d_E'] / b:.3f}" if b >= RATIO_MIN_BOUND else "-"
        lines.append(f"| {p['model']} | {p['train_size']:,} | {p['step']:,} | {p['mu']:.3g} "
                     f"[{p['mu_lower']:.2g}, {p['mu_upper']:.2g}] | {p['d_E']:.4f} | {b:.4f} | "
                     f"{ratio} |")
    lines += ["", "Measured caps (attack vs exact):", "| μ | d(E) attack | exact, same points | theory | failed |",
              "|---|---|---|---|---|"]
    for c in summary["caps"]:
        lines.append(f"| {c['mu']:.0e} | {c['d_E_attack']:.4f} | {c['d_E_exact_same_points']:.4f} | "
                     f"{c['d_E_theory']:.4f} | {c['attack_failed']}/{c['n']} |")
    return "\n".join(lines)
