"""``sphere-quadratic-perfect-init``: the quadratic net started at a perfect solution and trained on a
finite set (Gilmer et al. 2018, §4).

The paper starts from a perfect solution whose sigmoid output is about 0.0016 on the inner sphere
and 0.9994 on the outer (so the loss is small but not zero), trains on a finite set, and reports
that the worst-case loss on the sphere diverges while the average loss falls, with adversarial
examples found again after about 1,000 steps. The start here is scaled to those outputs (every α
inside [1/R², 1], logits ``s·(Σ αᵢ zᵢ² − 1)`` with ``s`` and the α mean solved from the two
outputs); every ``early_every`` steps through ``early_until`` (then every ``track_every``) the run
logs the average training loss, the exact worst-case loss on each sphere (from the extreme
eigenvalues of ``w·WᵀW``), the worst-case loss the manifold attack finds, the α spectrum and the
exact and CLT error rates.

    spheres run sphere-quadratic-perfect-init --preset quick    # d = 50, h = 100, N = 100: ~1 min CPU
    spheres run sphere-quadratic-perfect-init --preset paper    # d = 500, h = 1000, N = 10^6, 10^6 steps

Expected (quick): the start is perfect with outputs near 0.0016 / 0.9994; the exact worst-case loss
rises while the average loss falls, and the net stops being perfect within a few hundred steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

import attacks

from .. import plots
from ..config import require
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..sphere import data as sdata
from ..sphere import models
from ..sphere.bracket import bracket, format_bracket, format_distance_vs_bound
from ..sphere.quadratic import alphas_of, exact_worst_case_loss, quadratic_theory
from ..tables import Table, Tables, fmt_log10, key_value
from . import register
from ._sphere import SphereTrainConfig, distance_vs_bound, keys, measure_error_rates, provenance, train_in_run

OUTPUTS = PaperValue("sigmoid output of the perfect start, inner / outer sphere", "0.0016 / 0.9994", "gilmer",
                     "§4", "unverified")
DIVERGE = PaperValue("worst-case loss on the sphere while the average loss falls", "diverges", "gilmer", "§4",
                     "unverified")
FOUND_AGAIN = PaperValue("adversarial examples found again after", "~1,000 steps", "gilmer", "§4",
                         "unverified")


@dataclasses.dataclass(frozen=True)
class PerfectInitConfig(SphereTrainConfig):
    """Start at a perfect quadratic net with sigmoid outputs ``init_outputs`` (inner, outer) and
    train on a finite set of ``train_size`` points; dense tracking every ``early_every`` steps up
    to ``early_until``, with the manifold attack's worst-case loss on ``worst_case_points``."""

    model: Literal["relu", "quadratic"] = "quadratic"
    train_size: int = 1_000_000
    init_outputs: tuple[float, ...] = (0.0016, 0.9994)
    early_every: int = 100
    early_until: int = 10_000
    worst_case_points: int = 100

    PRESETS: typing.ClassVar = {
        "quick": dict(d=50, hidden=100, batch=50, steps=5000, lr=1e-3, chunk_steps=100,
                      ckpt_every=1000, eval_samples=100_000, train_size=100, track_every=500,
                      early_every=100, early_until=2000, track_eval_every=2500, track_eval_samples=20_000,
                      worst_case_points=50, worst_case_steps=200),
        "medium": dict(d=500, hidden=1000, batch=50, steps=100_000, chunk_steps=100,
                       ckpt_every=10_000, eval_samples=1_000_000, train_size=10_000,
                       track_every=5000, track_eval_every=25_000, worst_case_steps=300),
        "paper": dict(d=500, hidden=1000, batch=50, steps=1_000_000, chunk_steps=100,
                      ckpt_every=20_000, eval_samples=10_000_000, train_size=1_000_000,
                      track_every=10_000, track_eval_every=100_000, worst_case_steps=300),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~15 min CPU (estimate)",
                             "paper": "~2 h on 2 CPU cores (estimate)"}

    def validate(self) -> None:
        super().validate()
        require(self.train_size >= self.batch, "perfect-init trains on a finite set: train_size >= batch")
        require(self.hidden >= self.d, f"a perfect quadratic net needs hidden >= d (got {self.hidden} < {self.d})")
        require(len(self.init_outputs) == 2 and 0 < self.init_outputs[0] < 0.5 < self.init_outputs[1] < 1,
                f"init_outputs must be (inner, outer) sigmoid outputs with 0 < inner < 0.5 < outer < 1 "
                f"(got {self.init_outputs})")
        require(self.early_every >= self.chunk_steps and self.early_every % self.chunk_steps == 0,
                f"early_every ({self.early_every}) must be a multiple of chunk_steps ({self.chunk_steps})")
        require(self.early_until >= 0, f"early_until must be >= 0 (got {self.early_until})")
        require(self.worst_case_points >= 0, f"worst_case_points must be >= 0 (got {self.worst_case_points})")
        models.perfect_start(self.R, *self.init_outputs)      # raises when the outputs cannot be met


def make_tracker(cfg: PerfectInitConfig):
    """Tracked metrics: α spectrum and theory rates, exact worst-case losses, the manifold attack's
    worst-case loss on inner- and outer-sphere points, measured rates every ``track_eval_every``."""
    k = keys(cfg.seed)["attack"]
    x_in = sdata.sample_sphere(jax.random.fold_in(k, 0), cfg.worst_case_points, cfg.d, 1.0)
    x_out = sdata.sample_sphere(jax.random.fold_in(k, 1), cfg.worst_case_points, cfg.d, cfg.R)

    def track(state) -> dict:
        step = int(state.step)
        due = (step <= cfg.early_until and step % cfg.early_every == 0) or step % (cfg.track_every or cfg.chunk_steps) == 0
        out = {}
        if due:
            params = jax.device_get(state.params)
            out.update(quadratic_theory(params, cfg.R))
            wc = exact_worst_case_loss(params, cfg.R)
            out.update({f"exact_worst_case_loss_{s}": v for s, v in wc.items()})
            if cfg.worst_case_points:
                f = models.logit_fns(state.model).per_example
                variables = {"params": state.params}
                for s, x in (("inner", x_in), ("outer", x_out)):
                    y = jnp.full((x.shape[0],), 0 if s == "inner" else 1, jnp.int32)
                    r = attacks.sphere_pgd(f, x, y, step_size=cfg.attack_step_size, num_steps=cfg.worst_case_steps,
                                           mode="worst_case", params=variables)
                    out[f"attack_worst_case_loss_{s}"] = float(np.max(np.asarray(r.loss)))
                    out[f"attack_errors_{s}"] = int(np.asarray(r.success).sum())
        if cfg.track_eval_every and step % cfg.track_eval_every == 0:
            from ..sphere import evaluate, train

            rates = evaluate.two_sphere_error_rates(
                models.logit_fns(state.model).batched, train.variables_of(state),
                key=jax.random.fold_in(keys(cfg.seed)["eval"], step + 1), d=cfg.d, R=cfg.R,
                n=cfg.track_eval_samples, chunk=min(cfg.eval_chunk, cfg.track_eval_samples), progress=False)
            for sphere, r in rates.items():
                out[f"measured_{sphere}_errors"] = r.errors
                out[f"measured_{sphere}_n"] = r.n
        return out

    return track


def _figure(tracked: list[dict]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    st = [m["step"] for m in tracked]
    ax.plot(st, [m.get("loss", np.nan) for m in tracked], "k-", label="average training loss (chunk mean)")
    for s, c in (("inner", "C0"), ("outer", "C1")):
        ax.plot(st, [m[f"exact_worst_case_loss_{s}"] for m in tracked], "-", color=c, label=f"worst case, exact, {s}")
        if any(f"attack_worst_case_loss_{s}" in m for m in tracked):
            ax.plot(st, [m.get(f"attack_worst_case_loss_{s}", np.nan) for m in tracked], ":", color=c,
                    label=f"worst case, manifold attack, {s}")
    ax.set(yscale="log", xlabel="training step", ylabel="sigmoid cross-entropy",
           title="Perfect start on a finite set: average vs worst-case loss")
    ax.legend(fontsize=7)
    return fig


@register("sphere-quadratic-perfect-init", PerfectInitConfig,
          "quadratic net started at a perfect solution, trained on a finite set (Gilmer §4): "
          "average vs worst-case loss, alphas drift out of [1/R^2, 1]", table=lambda s: table(s),
          paper_rows=lambda s: paper_rows(s), paper="gilmer")
def run(cfg: PerfectInitConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    init = models.perfect_quadratic_variables(cfg.d, cfg.hidden, cfg.R, key=keys(cfg.seed)["init"],
                                              outputs=tuple(cfg.init_outputs))
    state, timing = train_in_run(cfg, run_dir, progress=progress, extra_metrics=make_tracker(cfg),
                                 init_variables=init)
    t1 = time.time()
    rates = measure_error_rates(cfg, state, progress=progress)
    tracked = [m for m in run_dir.read_metrics() if "alpha_fraction_in_range" in m]
    first_imperfect = next((m["step"] for m in tracked if not m["perfect"]), None)
    first_attack = next((m["step"] for m in tracked
                         if m.get("attack_errors_inner", 0) + m.get("attack_errors_outer", 0) > 0), None)
    th = quadratic_theory(jax.device_get(state.params), cfg.R)
    distances = final_distances(cfg, state)
    a0, scale = alphas_of(init["params"]).mean(), -float(init["params"]["b"])
    start_logits = {"inner": scale * (a0 - 1), "outer": scale * (cfg.R ** 2 * a0 - 1)}   # at the mean α
    summary = {"experiment": "sphere-quadratic-perfect-init", "preset": run_dir.preset, "seed": cfg.seed,
               "d": cfg.d, "hidden": cfg.hidden, "R": cfg.R, "train_size": cfg.train_size, "steps": cfg.steps,
               "init_outputs_target": list(cfg.init_outputs),
               "init_outputs_mean": {k: 1 / (1 + math.exp(-v)) for k, v in start_logits.items()},
               "initial": tracked[0] if tracked else None, "final_theory": th,
               "first_imperfect_step": first_imperfect, "first_attack_error_step": first_attack,
               "trajectory": [{k: m.get(k) for k in ("step", "loss", "exact_worst_case_loss_inner",
                                                     "exact_worst_case_loss_outer", "attack_worst_case_loss_inner",
                                                     "attack_worst_case_loss_outer", "alpha_fraction_in_range",
                                                     "perfect")} for m in tracked],
               "error_rate": {k: v.as_dict() for k, v in rates.items()}, **distances,
               "train_seconds": timing["train_seconds"],
               "wall_seconds": round(timing["train_seconds"] + time.time() - t1, 1)}
    if tracked:
        run_dir.save_figure("perfect_init_losses", _figure(tracked))
        fig = plots.trajectory_figure(tracked, "Perfect initialisation on a finite set")
        run_dir.save_figure("perfect_init", fig)
    run_dir.write_summary(summary)
    return summary


def final_distances(cfg: PerfectInitConfig, state) -> dict:
    """The final net's exact d(E) per sphere against Theorem 5.1, and the bracket exact ≤ attack of
    the nearest-error manifold attack from the ``worst_case_points`` points of each sphere."""
    out = {"distance_vs_bound": distance_vs_bound(cfg, alphas_of(state.params))}
    if cfg.worst_case_points:
        k = keys(cfg.seed)["attack"]
        f = models.logit_fns(state.model).per_example
        variables = {"params": state.params}
        out["attack_bracket"] = {}
        for i, (s, radius) in enumerate((("inner", 1.0), ("outer", cfg.R))):
            x = sdata.sample_sphere(jax.random.fold_in(k, i), cfg.worst_case_points, cfg.d, radius)
            r = attacks.sphere_pgd(f, x, jnp.full((x.shape[0],), i, jnp.int32), step_size=cfg.attack_step_size,
                                   num_steps=cfg.attack_steps, mode="nearest", params=variables)
            out["attack_bracket"][s] = bracket(state.model, variables, x, i, r)[0]
    return out


def table(s: dict) -> Tables:
    """The run's table; records made before the scaled start (no ``trajectory``) show what they have."""
    th, er = s["final_theory"], s["error_rate"]
    out = s.get("init_outputs_mean")
    rows = [("setting", f"d={s['d']}, h={s['hidden']}, N={s['train_size']:,}, {s['steps']:,} steps from a "
                        f"perfect start"),
            ("start: sigmoid output at the mean α, inner / outer (target)",
             f"{out['inner']:.4f} / {out['outer']:.4f} ({s['init_outputs_target'][0]} / "
             f"{s['init_outputs_target'][1]})" if out else "unscaled start (w = 1, b = −1)"),
            ("alpha in range at start", f"{s['initial']['alpha_fraction_in_range']:.1%}" if s["initial"] else "-"),
            ("alpha in range at end", f"{th['alpha_fraction_in_range']:.1%} ({th['alpha_below']} below, "
                                      f"{th['alpha_above']} above)"),
            ("first step no longer perfect (exact)", _first_step(s, "first_imperfect_step")),
            ("first step the manifold attack finds an error", _first_step(s, "first_attack_error_step")),
            ("exact error inner / outer", f"{fmt_log10(th['log10_exact_inner'])} / {fmt_log10(th['log10_exact_outer'])}"),
            ("CLT error inner / outer", f"{fmt_log10(th['log10_clt_inner'])} / {fmt_log10(th['log10_clt_outer'])}"),
            ("measured errors inner / outer", f"{er['inner']['errors']}/{er['inner']['n']:,} / "
                                              f"{er['outer']['errors']}/{er['outer']['n']:,}")]
    for sp in ("inner", "outer") if s.get("distance_vs_bound") else ():
        rows.append((f"final d(E), {sp} sphere", format_distance_vs_bound(s["distance_vs_bound"], sp)))
        rows.append((f"nearest-error attack vs exact, {sp}", format_bracket((s.get("attack_bracket") or {}).get(sp))))
    traj = s.get("trajectory")
    if not traj:
        return Tables("sphere-quadratic-perfect-init", provenance(s), (key_value(rows),))
    pick = sorted({0, 1, 2, 5, 10, 20, 50, len(traj) // 2, len(traj) - 1} & set(range(len(traj))))
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    losses = Table(("step", "average loss", "worst case exact inner / outer", "worst case attack inner / outer",
                    "α in range"),
                   [(f"{traj[i]['step']:,}", fmt(traj[i]["loss"]),
                     f"{fmt(traj[i]['exact_worst_case_loss_inner'])} / {fmt(traj[i]['exact_worst_case_loss_outer'])}",
                     f"{fmt(traj[i]['attack_worst_case_loss_inner'])} / {fmt(traj[i]['attack_worst_case_loss_outer'])}",
                     f"{traj[i]['alpha_fraction_in_range']:.1%}") for i in pick],
                   caption="Average vs worst-case loss over training (a selection of the tracked steps)")
    return Tables("sphere-quadratic-perfect-init", provenance(s), (key_value(rows), losses))


def paper_rows(s: dict) -> list[PaperRow]:
    traj = s.get("trajectory") or []
    out = s.get("init_outputs_mean")
    rows = [PaperRow(OUTPUTS, f"{out['inner']:.4f} / {out['outer']:.4f} (at the mean α)" if out else
                     "not scaled in this record (w = 1, b = −1: about 0.45 / 0.59)")]
    if len(traj) >= 2:
        a, b = traj[0], traj[-1]
        wc = lambda m: max(m["exact_worst_case_loss_inner"], m["exact_worst_case_loss_outer"])  # noqa: E731
        # the start has no training loss yet (it is the mean over the chunk after a step)
        first = next((m for m in traj if m["loss"] is not None), b)
        peak = max(traj, key=wc)
        worst = (f"{wc(a):.3g} → {wc(b):.3g} (step {a['step']:,} → {b['step']:,})" if peak is b else
                 f"{wc(a):.3g} → {wc(peak):.3g} → {wc(b):.3g} (step {a['step']:,} → {peak['step']:,}, its "
                 f"peak → {b['step']:,})")
        rows.append(PaperRow(DIVERGE, f"exact worst case {worst}; average {first['loss']:.3g} → {b['loss']:.3g} "
                                      f"(step {first['step']:,} → {b['step']:,})"))
    rows.append(PaperRow(FOUND_AGAIN, f"{_first_step(s, 'first_imperfect_step')} (exact: first α outside the "
                                      f"band); {_first_step(s, 'first_attack_error_step')} (manifold attack)"))
    return rows


def _first_step(s: dict, key: str) -> str:
    """``step 1,200``; ``none in N steps`` when tracked and never; ``not tracked`` in older records."""
    if key not in s:
        return "not tracked"
    return "none in {:,} steps".format(s["steps"]) if s[key] is None else f"step {s[key]:,}"
