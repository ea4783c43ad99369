"""``sphere-error-vs-distance``: the paper's central figure (Gilmer et al. 2018, §5).

Models × training-set sizes, measured at several steps during training: μ(E), the inner-sphere
error rate (Clopper–Pearson interval), against d(E), the mean distance to the nearest error found
by the manifold attack, beside Theorem 5.1's exact cap bound and its asymptotic form; and
*measured caps*: E an actual cap of known measure, attacked the same way, which checks the attack
as a distance estimator against the cap's exact d(E).

    spheres run sphere-error-vs-distance --preset quick     # d = 50, two small nets: ~2 min CPU
    spheres run sphere-error-vs-distance --preset medium    # d = 500, the paper's three nets, 5,000 steps

Expected (quick): the median d(E)/bound below 1 (Theorem 5.1: d(E) is at most the cap bound); the
attack recovers the caps' exact d(E) to within 0.01.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import attacks
import theory

from ..config import require
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..sharding import across_processes, host_local
from ..sphere import data as sdata
from ..sphere import bracket, evaluate, models, train
from ..sphere.manifold import mean_distance_to_error, nearest_on_manifold
from ..tables import Table, Tables
from . import register
from ._sphere import SphereTrainConfig, derive_config, keys, provenance, train_in_run
from ._sweep import members_to_run, shard_result

NEAR_BOUND = PaperValue("trained models' d(E) relative to the cap bound", "close to the bound", "gilmer",
                        "Figure 4", "verified")
CAPS = PaperValue("the attack on actual caps recovers their exact d(E)", "— (our check)", "gilmer", "§5",
                  "verified")

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
    mu = evaluate.sphere_error_rate(models.logit_fns(model).batched, variables, key=k_eval, d=d, radius=1.0,
                                    label=0, n=n_eval, progress=False)
    x = sdata.sample_sphere(k_att, n_attack, d, 1.0)
    local = host_local(variables) if jax.process_count() > 1 else variables
    res = across_processes(lambda xs: nearest_on_manifold(model, local, xs, 0, step_size=step_size,
                                                          num_steps=num_steps), x)
    dist = mean_distance_to_error(res, x, model, variables, 0)
    # the bracket lower <= d(E) <= attack on the same points; for a quadratic net also the exact d(E)
    # over n_eval points (cheap), whose only noise is the sampling of the points
    out = {"mu": mu.rate, "mu_lower": mu.lower, "mu_upper": mu.upper, "mu_errors": mu.errors,
           "mu_n": mu.n, **dist, "bracket": bracket.bracket(model, variables, x, 0, res)[0]}
    if isinstance(model, models.QuadraticNet):
        out["d_E_exact"] = bracket.exact_d_E(variables, n=n_eval, key=jax.random.fold_in(k_eval, 1))
    return out


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
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="gilmer")
def run(cfg: ErrorDistanceConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    specs = [(mname, n) for mname in cfg.models for n in cfg.train_sizes]
    names = [f"{mname}-N{n}" for mname, n in specs]
    todo = members_to_run(run_dir, names)
    points, train_seconds = [], 0.0
    for i, (mname, n) in enumerate(specs):
        if i not in todo:
            continue
        member = _train_member(cfg, run_dir, names[i], mname, n, progress=progress)
        if run_dir.shard:
            continue
        train_seconds += member["train_seconds"]  # measurements included, summed over starts
        points += member["points"]
        run_dir.log_metrics({"step": len(points), "model": mname, "train_size": n})
    if run_dir.shard:
        return shard_result(run_dir, names, todo)
    t_rest = time.time()
    caps = measured_caps(cfg.cap_mus, cfg.d, key=keys(cfg.seed)["eval"], n=cfg.measure_attack,
                         step_size=cfg.attack_step_size, num_steps=cfg.attack_steps)
    summary = {"experiment": "sphere-error-vs-distance", "preset": run_dir.preset, "seed": cfg.seed, "d": cfg.d, "models": list(cfg.models),
               "train_sizes": list(cfg.train_sizes), "steps": cfg.steps, "points": points, "caps": caps,
               "wall_seconds": round(train_seconds + time.time() - t_rest, 1)}
    run_dir.save_figure("error_vs_distance", _figure(summary))
    run_dir.write_summary(summary)
    return summary


def _train_member(cfg: ErrorDistanceConfig, run_dir: RunDir, name: str, mname: str, n: int, *,
                  progress: bool) -> dict:
    """Train (or resume) one model on N points in the sub-run ``name``, measuring (μ(E), d(E))
    every ``measure_every`` steps; its summary holds the measured points and training time."""
    kind, widths, hidden = MODEL_SPECS[mname]
    changes = dict(model=kind, train_size=n, attack_samples=0, track_every=0, track_eval_every=0)
    if cfg.paper_sizes:
        changes.update(widths=widths) if kind == "relu" else changes.update(hidden=hidden)
    sub_cfg = derive_config(cfg, **changes)
    with RunDir.open(run_dir.path / name, "sphere-train", sub_cfg) as sub_dir:
        sub_dir.set_origin(run_dir.preset, run_dir.overrides)
        if sub_dir.summary is not None:
            return sub_dir.summary
        key = jax.random.fold_in(keys(cfg.seed)["attack"], n)

        def measure(state):
            step = int(state.step)
            if step == 0 or step % cfg.measure_every:
                return {}
            m = measure_mu_and_distance(state.model, train.variables_of(state), d=cfg.d,
                                        key=jax.random.fold_in(key, step), n_eval=cfg.measure_eval,
                                        n_attack=cfg.measure_attack, step_size=cfg.attack_step_size,
                                        num_steps=cfg.attack_steps)
            return {"measure": m}

        _, timing = train_in_run(sub_cfg, sub_dir, progress=progress, extra_metrics=measure)
        member = {"experiment": "sphere-train", "model": mname, "train_size": n,
                  "train_seconds": timing["train_seconds"],
                  "points": [{"model": mname, "train_size": n, "step": rec["step"], **rec["measure"]}
                             for rec in sub_dir.read_metrics() if "measure" in rec]}
        sub_dir.write_summary(member)
        return member


def _figure(summary: dict) -> Figure:
    d = summary["d"]
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
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
            d_E = np.array([p["d_E"] for p in pts])
            lower = np.array([_lower_end(p) for p in pts])
            yerr = np.array([np.where(np.isfinite(lower), d_E - lower, 0.0), np.zeros_like(d_E)])
            bars = ax.errorbar(mu, d_E, xerr=xerr, yerr=np.maximum(yerr, 0.0), fmt=mk, ms=5, alpha=0.8,
                               capsize=2, label=f"{m} (attack; " + (f"bar down to the {_kind(pts)} lower end)"
                                                  if _kind(pts) else "no lower end: not certified)"))
            exact = [(p["mu"], p["d_E_exact"]) for p in pts if p.get("d_E_exact") is not None]
            if exact:
                ax.plot(*zip(*exact), "*", ms=8, color=bars[0].get_color(), label=f"{m}: exact d(E)")
    ax.set(xscale="log", xlabel="μ(E): inner-sphere error rate", ylabel="d(E): mean L2 distance to nearest error",
           title=f"Error rate vs distance to the nearest error (d = {d})", ylim=(0, None))
    ax.legend(fontsize=8)
    return fig


def _lower_end(p: dict) -> float:
    """The lower end of a measurement's d(E) bracket on the attacked points: their mean exact (quadratic
    net) or certified (ReLU net) distance; NaN if there is none."""
    b = p.get("bracket") or {}
    return np.nan if b.get("lower_mean") is None or b["kind"] == "none" else b["lower_mean"]


def _kind(pts: list[dict]) -> str:
    kinds = {(p.get("bracket") or {}).get("kind", "none") for p in pts}
    return "/".join(sorted(kinds - {"none"}))


# Below this cap bound (μ(E) → 1: nearly every point is itself an error) d(E)/bound is 0/0 noise.
RATIO_MIN_BOUND = 1e-3


def table(s: dict) -> Tables:
    d = s["d"]
    rows = []
    for p in s["points"]:
        if p["mu_errors"] == 0:
            rows.append((p["model"], f"{p['train_size']:,}", f"{p['step']:,}",
                         f"0/{p['mu_n']:,} (≤{p['mu_upper']:.2g})", _lower_cell(p), f"{p['d_E']:.4f}",
                         "-", "-"))
            continue
        b = float(theory.cap_distance_bound(p["mu"], d))
        lo = _lower_end(p)
        ratio = ("-" if b < RATIO_MIN_BOUND else f"{p['d_E_exact'] / b:.3f} exact"
                 if p.get("d_E_exact") is not None else f"{p['d_E'] / b:.3f}" if not np.isfinite(lo)
                 else f"[{lo / b:.3f}, {p['d_E'] / b:.3f}]")
        rows.append((p["model"], f"{p['train_size']:,}", f"{p['step']:,}",
                     f"{p['mu']:.3g} [{p['mu_lower']:.2g}, {p['mu_upper']:.2g}]", _lower_cell(p),
                     f"{p['d_E']:.4f}", f"{b:.4f}", ratio))
    points = Table(("model", "N", "step", "μ(E) [95% CI]", "d(E) lower end", "d(E) attack",
                    "cap bound at μ(E)", "d(E)/bound [lower, attack]"), rows,
                   caption="lower end: the mean exact (quadratic net) or certified (ReLU net) distance "
                           "of the attacked points (attack ≥ truth ≥ lower end); a quadratic net's "
                           "d(E)/bound uses its exact d(E) over the μ(E) points")
    caps = Table(("μ", "d(E) attack", "exact, same points", "theory", "failed"),
                 [(f"{c['mu']:.0e}", f"{c['d_E_attack']:.4f}", f"{c['d_E_exact_same_points']:.4f}",
                   f"{c['d_E_theory']:.4f}", f"{c['attack_failed']}/{c['n']}") for c in s["caps"]],
                 caption="Measured caps (attack vs exact)")
    return Tables(f"sphere-error-vs-distance (d={d}); models: {', '.join(s['models'])}", provenance(s),
                  (points, caps))


def _lower_cell(p: dict) -> str:
    b = p.get("bracket")
    if not b:
        return "-"
    if b["kind"] == "exact" and b["lower_mean"] is not None:
        gap = f"; attack ×{b['ratio_mean']:.3f} mean, ×{b['ratio_max']:.3f} worst" if b["ratio_mean"] else ""
        many = f"; {p['d_E_exact']:.4f} over {p['mu_n']:,} points" if p.get("d_E_exact") is not None else ""
        return f"{b['lower_mean']:.4f} exact{gap}{many}"
    if b["kind"] == "none" or b["lower_mean"] is None:
        return "∞ exact" if b["no_error"] else "- (not certified)"
    return f"{b['lower_mean']:.4f} {b['kind']}" + (f", ×2 for {b['fraction_tight']:.0%}"
                                                    if b["fraction_tight"] is not None else "")


def paper_rows(s: dict) -> list[PaperRow]:
    bounds = [(p, float(theory.cap_distance_bound(p["mu"], s["d"]))) for p in s["points"]
              if p["mu_errors"] > 0 and p["attack_failed"] == 0]
    ratios = [p["d_E"] / b for p, b in bounds if b >= RATIO_MIN_BOUND]
    exact = [p["d_E_exact"] / b for p, b in bounds if b >= RATIO_MIN_BOUND and p.get("d_E_exact") is not None]
    lower = [_lower_end(p) / b for p, b in bounds if b >= RATIO_MIN_BOUND and np.isfinite(_lower_end(p))]
    caps = s["caps"]
    gap = max(abs(c["d_E_attack"] - c["d_E_exact_same_points"]) for c in caps) if caps else None
    near = (f"median d(E)/bound = {np.median(ratios):.3f} (attack) over {len(ratios)} measurements"
            + (f"; lower ends (exact / certified): median {np.median(lower):.3f} over {len(lower)}" if lower else "")
            + (f"; quadratic nets' exact d(E)/bound: median {np.median(exact):.3f}, max {max(exact):.3f} "
               f"over {len(exact)}" if exact else "")
            if ratios else "no measurement with errors")
    return [PaperRow(NEAR_BOUND, near),
            PaperRow(CAPS, f"largest gap {gap:.4f} over {len(caps)} caps" if gap is not None else "-")]
