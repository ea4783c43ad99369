"""``sphere-relu-variants``: why does our ReLU net err where Gilmer et al.'s does not? (Gilmer §3)

The paper finds no error in 10⁷ points per sphere with 2 × 1000 ReLU+BatchNorm units; our
`sphere-relu` errs on a few hundred. This driver trains the ReLU recipe once per variant of the
choices the paper leaves open (each a sub-run, `_sphere.run_sub`) and evaluates every trained model
four ways, post hoc (no retraining): BatchNorm with the running averages or with exact population
statistics (`spheres.sphere.models.population_batch_stats`), each in float32 and in float64; and,
on the same points, the fewest errors any shift of the output could reach (`offset_analysis`):
what a misplaced threshold explains, and what only overlapping logits can.

Variants: ``baseline`` (Flax defaults: BatchNorm momentum 0.99, epsilon 1e-5, LeCun-normal init,
constant learning rate); ``bn_epsilon_1e-3`` (TensorFlow's epsilon); ``bn_momentum_0.9``;
``init_glorot_uniform`` (TensorFlow's Dense init); ``lr_linear_decay`` (linear to 0 over the last
half of the steps).

    spheres run sphere-relu-variants --preset quick     # d = 20, 2 × 32 units, 400 steps per variant: ~2 min
    spheres run sphere-relu-variants --preset medium    # d = 500, 2 × 1000, 10^5 steps per variant, 10^6 points

Expected (quick): every variant and evaluation mode reported with its exact 95 % interval and the
mean nearest-error distances of the attacked points. The variant with zero errors, if any, is named in
the summary's ``zero_error``.
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import numpy as np

from theory.binomial import difference_interval

from ..config import require
from ..paper import PaperRow
from ..results import RunDir, read_json
from ..sphere import evaluate, models, train
from ..tables import Table, Tables, fmt_rate
from . import _gilmer, register
from ._sphere import (PAPER_RECIPE, SphereTrainConfig, derive_config, eval_model, final_state, keys,
                      provenance, run_sub)

VARIANTS: dict[str, dict] = {
    "baseline": {},
    "bn_epsilon_1e-3": {"bn_epsilon": 1e-3},
    "bn_momentum_0.9": {"bn_momentum": 0.9},
    "init_glorot_uniform": {"init": "glorot_uniform"},
    "lr_linear_decay": {"lr_schedule": "linear_decay"},
}
EVAL_MODES = (("running", "float32"), ("population", "float32"), ("running", "float64"),
              ("population", "float64"))
POST_HOC = "post_hoc"   # post_hoc.json in each sub-run: the four evaluations


@dataclasses.dataclass(frozen=True)
class VariantsConfig(SphereTrainConfig):
    variants: tuple[str, ...] = tuple(VARIANTS)
    PRESETS: typing.ClassVar = {
        "quick": dict(model="relu", d=20, widths=(32, 32), batch=50, steps=400, chunk_steps=100,
                      ckpt_every=200, eval_samples=20_000, eval_chunk=10_000, attack_samples=20,
                      attack_steps=50, worst_case_steps=50, population_samples=5_000),
        "medium": dict(model="relu", d=500, widths=(1000, 1000), batch=50, steps=100_000,
                       chunk_steps=1000, ckpt_every=10_000, eval_samples=1_000_000, attack_samples=300),
        "paper": dict(model="relu", widths=(1000, 1000), attack_samples=300, **PAPER_RECIPE),
    }
    COST: typing.ClassVar = {"quick": "~2 min CPU", "medium": "~5 × 15 min CPU (one core)",
                             "paper": "~5 × 2 h on 2 CPU cores"}

    def validate(self) -> None:
        super().validate()
        require(self.model == "relu", f"model must be relu (got {self.model})")
        require(len(self.variants) >= 1 and all(v in VARIANTS for v in self.variants),
                f"variants must be a non-empty list of {', '.join(VARIANTS)} (got {self.variants})")
        require(self.bn_stats == "running" and self.eval_dtype == "float32",
                "bn_stats and eval_dtype are set per evaluation by this experiment; leave them at "
                "running / float32")


def by_statistics(cfg: SphereTrainConfig, state: train.TrainState) -> dict[str, tuple]:
    """``(model, variables)`` of one trained model per BatchNorm statistics: ``running`` (the
    averages kept in training) and ``population`` (exact statistics of ``population_samples``
    points, `spheres.sphere.models.population_batch_stats`)."""
    return {"running": (state.model, train.variables_of(state)),
            "population": eval_model(dataclasses.replace(cfg, bn_stats="population"), state)}


def evaluate_modes(cfg: SphereTrainConfig, stats_models: dict[str, tuple], *, progress: bool = False) -> dict:
    """Error rates per sphere of one trained model (`by_statistics`) in every ``EVAL_MODES``
    (``"stats/dtype"`` keys), ``eval_samples`` points per sphere from key ``eval``: the same float32
    points in every mode (the float64 modes compute on them in float64)."""
    out = {}
    for stats, dtype in EVAL_MODES:
        model, variables = stats_models[stats]
        if dtype == "float64":
            model = model.clone(dtype=np.float64)
            variables = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax.device_get(variables))
        with jax.enable_x64(dtype == "float64"):
            rates = evaluate.two_sphere_error_rates(models.logit_fns(model).batched, variables,
                                                    key=keys(cfg.seed)["eval"], d=cfg.d, R=cfg.R,
                                                    n=cfg.eval_samples, chunk=cfg.eval_chunk, progress=progress)
        out[f"{stats}/{dtype}"] = {k: v.as_dict() for k, v in rates.items()}
    return out


def offset_analysis(cfg: SphereTrainConfig, stats_models: dict[str, tuple]) -> dict:
    """Per BatchNorm statistics (float32; `by_statistics`): `evaluate.best_offset` on the logits of
    the very points `evaluate_modes` counts (key ``eval``): how few errors a shifted output
    ``logit − t`` could make, i.e. how much of the error is a misplaced threshold rather than
    overlapping classes."""
    out = {}
    k_in, k_out = jax.random.split(keys(cfg.seed)["eval"])
    kw = dict(d=cfg.d, n=cfg.eval_samples, chunk=cfg.eval_chunk)
    for stats, (model, variables) in stats_models.items():
        f = models.logit_fns(model).batched
        out[stats] = evaluate.best_offset(evaluate.sphere_logits(f, variables, key=k_in, radius=1.0, **kw),
                                          evaluate.sphere_logits(f, variables, key=k_out, radius=cfg.R, **kw))
    return out


def _distances(a: dict | None) -> dict | None:
    if not a:
        return None
    n = a.get("n_correct", a["n_points"])
    out = {"n": n}
    for side in ("on_manifold_nearest", "off_manifold_nearest"):
        r = a[side]
        out[side] = {"found": r["found"], **({k: r["distance"][k] for k in ("mean", "median", "q05", "q95")}
                                             if r["found"] else {})}
    return out


@register("sphere-relu-variants", VariantsConfig,
          "ReLU net (Gilmer §3) per training variant × BatchNorm statistics × precision: where do errors come from",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="gilmer")
def run(cfg: VariantsConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    rows = []
    for name in cfg.variants:
        changes = VARIANTS[name]
        sub_cfg = derive_config(cfg, **changes)
        sub_dir, s = run_sub(run_dir, name, "sphere-relu", sub_cfg, progress=progress)
        p = sub_dir.path / f"{POST_HOC}.json"
        post = read_json(p) if p.exists() else None
        stale = post is None or post.get("eval_samples") != cfg.eval_samples
        if stale or "offsets" not in post:
            stats_models = by_statistics(sub_cfg, final_state(sub_cfg, sub_dir))
            if stale:
                post = {"eval_samples": cfg.eval_samples, "population_samples": cfg.population_samples,
                        "modes": evaluate_modes(sub_cfg, stats_models, progress=progress)}
            post = {**post, "offsets": offset_analysis(sub_cfg, stats_models)}
            sub_dir.save_json(POST_HOC, post)
        rows.append({"variant": name, "changes": changes, "modes": post["modes"], "offsets": post["offsets"],
                     "distances": _distances(s.get("attacks")), "final_train_loss": s.get("final_train_loss"),
                     "train_seconds": s.get("train_seconds")})
    zero = [f"{r['variant']} {m}" for r in rows for m, e in r["modes"].items()
            if e["inner"]["errors"] == 0 and e["outer"]["errors"] == 0]
    summary = {"experiment": run_dir.experiment, "preset": run_dir.preset, "seed": cfg.seed, "d": cfg.d,
               "widths": list(cfg.widths), "steps": cfg.steps, "eval_samples": cfg.eval_samples,
               "variants": rows, "zero_error": zero, "devices": jax.device_count(),
               "backend": jax.default_backend()}
    run_dir.write_summary(summary)
    return summary


def _dist(r: dict | None, side: str) -> str:
    if not r:
        return "-"
    q = r[side]
    return f"{q['mean']:.4f} (median {q['median']:.4f}; {q['found']}/{r['n']})" if q["found"] else f"none of {r['n']}"


def table(s: dict) -> Tables:
    rows = []
    for r in s["variants"]:
        for i, (mode, e) in enumerate(r["modes"].items()):
            rows.append((r["variant"] if i == 0 else "", mode, fmt_rate(e["inner"]), fmt_rate(e["outer"]),
                         _dist(r["distances"], "on_manifold_nearest") if i == 0 else "",
                         _dist(r["distances"], "off_manifold_nearest") if i == 0 else ""))
    t = Table(("variant", "BN stats / dtype", "inner errors", "outer errors",
               "on-manifold nearest error, mean", "off-manifold, mean"), tuple(rows),
              f"d = {s['d']}, widths {s['widths']}, {s['steps']:,} steps; errors in {s['eval_samples']:,} "
              f"points per sphere (exact 95 % interval); distances from the attacked inner-sphere points "
              f"(running statistics, float32)")
    notes = (f"zero errors: {', '.join(s['zero_error'])}" if s["zero_error"] else
             "no variant and evaluation mode reaches zero errors on both spheres",)
    tabs = (t, comparison_table(s)) + ((offset_table(s),) if all("offsets" in r for r in s["variants"]) else ())
    return Tables(s["experiment"], provenance(s), tabs, notes)


def offset_table(s: dict) -> Table:
    """The fewest errors a shifted output ``logit − t`` makes on the same points, per variant and
    BatchNorm statistics (`evaluate.best_offset`), beside the errors at ``t = 0``."""
    rows = [(r["variant"], stats, f"{o['inner_at_0']} + {o['outer_at_0']} = {o['inner_at_0'] + o['outer_at_0']}",
             f"{o['offset']:+.3g}", f"{o['inner']} + {o['outer']} = {o['total']}")
            for r in s["variants"] for stats, o in r["offsets"].items()]
    return Table(("variant", "BN stats", "errors at t = 0 (inner + outer)", "best offset t",
                  "errors at the best t (inner + outer)"), tuple(rows),
                 "the output shifted by the offset t that minimises the errors (float32, same points): what "
                 "recalibrating the output (a bias; what BatchNorm's statistics and epsilon move) could remove; "
                 "the errors left at the best t come from the two spheres' logits overlapping")


def compare_counts(e: dict, ref: dict, confidence: float = 0.95) -> str:
    """``e``'s error count against ``ref``'s (two measured rates over the same number of points) as
    the difference of rates with Newcombe's interval (`theory.binomial.difference_interval`) and
    a verdict, e.g. ``648 vs 505: +1.4e-4 [+6.0e-5, +2.3e-4], higher``. Every variant and mode
    is scored on the same points, so the counts are paired and this interval is conservative."""
    d, lo, hi = difference_interval(e["errors"], e["n"], ref["errors"], ref["n"], confidence)
    verdict = "not told apart" if lo <= 0.0 <= hi else ("lower" if hi < 0 else "higher")
    return f"{e['errors']} vs {ref['errors']}: {d:+.1e} [{lo:+.1e}, {hi:+.1e}], {verdict}"


def comparison_table(s: dict) -> Table:
    """Each variant and evaluation mode against the baseline's running/float32 evaluation (the
    recipe of `sphere-relu`), per sphere: what each candidate cause changes."""
    base = next((r for r in s["variants"] if r["variant"] == "baseline"), s["variants"][0])
    ref = base["modes"]["running/float32"]
    rows = [(r["variant"], mode, compare_counts(e["inner"], ref["inner"]), compare_counts(e["outer"], ref["outer"]))
            for r in s["variants"] for mode, e in r["modes"].items()
            if not (r is base and mode == "running/float32")]
    return Table(("variant", "BN stats / dtype", "inner: errors vs reference, difference of rates",
                  "outer: errors vs reference, difference of rates"), tuple(rows),
                 f"against {base['variant']} running/float32 (the sphere-relu recipe), same points; "
                 f"difference of rates with its 95 % interval (Newcombe; conservative for paired counts): "
                 f"higher / lower when the interval excludes 0")


def paper_rows(s: dict) -> list[PaperRow]:
    return [PaperRow(_gilmer.ERRORS, f"inner {fmt_rate(e['inner'])}, outer {fmt_rate(e['outer'])}",
                     quantity=f"errors in {e['inner']['n']:,} points per sphere, {r['variant']}, {mode}")
            for r in s["variants"] for mode, e in r["modes"].items()]
