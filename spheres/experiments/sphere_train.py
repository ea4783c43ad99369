"""``sphere-relu`` and ``sphere-quadratic``: train on the two spheres, then measure the error rate.

Gilmer et al. 2018, §3-4. Paper settings: d = 500, R = 1.3, Adam lr 1e-4, batch 50, 10^6 steps of
online data (50M samples), 10^7 evaluation points per sphere; ReLU net 2 × 1000 with BatchNorm;
quadratic net h = 1000. No errors were found in 10^7 samples per sphere.

Commands (results in README "Results")::

    spheres run sphere-quadratic --preset quick --out runs/quad-quick     # ~1 min on 2 CPU cores
    spheres run sphere-relu --preset paper --out runs/relu-paper          # ~1 h on 2 CPU cores
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import Literal

import jax
import numpy as np

from .. import data as sdata
from .. import evaluate, models, train
from ..checkpoint import Checkpoints
from ..config import Config, require
from ..results import RunDir, read_json
from . import register


@dataclasses.dataclass(frozen=True)
class SphereTrainConfig(Config):
    """Training and evaluation of one sphere model.

    ``train_size = 0`` means online data (a fresh batch every step); ``N > 0`` a fixed set of N
    points, reshuffled every epoch. ``steps`` must be a multiple of ``chunk_steps`` and
    ``ckpt_every`` a multiple of ``chunk_steps``.
    """

    model: Literal["relu", "quadratic"] = "relu"
    d: int = 500
    R: float = 1.3
    widths: tuple[int, ...] = (1000, 1000)   # ReLU hidden widths
    hidden: int = 1000                        # quadratic width h
    batch: int = 50
    steps: int = 1_000_000
    lr: float = 1e-4
    optimizer: Literal["adam", "sgd", "momentum"] = "adam"
    train_size: int = 0
    eval_samples: int = 10_000_000           # per sphere
    eval_chunk: int = 10_000
    chunk_steps: int = 1000
    ckpt_every: int = 10_000
    track_every: int = 0          # quadratic: alpha/theory metrics every this many steps (0: every chunk)
    track_eval_every: int = 0     # measured error rate during training every this many steps (0: off)
    track_eval_samples: int = 100_000
    attack_samples: int = 1000    # inner-sphere test points attacked after training (0: no attacks)
    attack_step_size: float = 0.01
    attack_steps: int = 1000      # sphere attack, nearest mode
    worst_case_steps: int = 1000  # sphere attack, worst-case mode
    seed: int = 0

    def validate(self) -> None:
        require(self.d >= 2, f"d must be >= 2 (got {self.d})")
        require(self.R > 1, f"R must be > 1 (the outer radius; got {self.R})")
        require(all(w >= 1 for w in self.widths) and len(self.widths) >= 1,
                f"widths must be positive integers, e.g. widths=1000,1000 (got {self.widths})")
        require(self.hidden >= 1, f"hidden must be >= 1 (got {self.hidden})")
        require(self.batch >= 2, f"batch must be >= 2 (got {self.batch})")
        require(self.steps >= 0, f"steps must be >= 0 (got {self.steps})")
        require(self.chunk_steps >= 1, f"chunk_steps must be >= 1 (got {self.chunk_steps})")
        require(self.steps % self.chunk_steps == 0,
                f"steps ({self.steps}) must be a multiple of chunk_steps ({self.chunk_steps})")
        require(self.ckpt_every >= self.chunk_steps and self.ckpt_every % self.chunk_steps == 0,
                f"ckpt_every ({self.ckpt_every}) must be a positive multiple of chunk_steps "
                f"({self.chunk_steps})")
        require(self.lr > 0 and np.isfinite(self.lr), f"lr must be positive (got {self.lr})")
        require(self.train_size == 0 or self.train_size >= self.batch,
                f"train_size must be 0 (online) or >= batch (got {self.train_size})")
        require(self.eval_samples >= 1, f"eval_samples must be >= 1 (got {self.eval_samples})")
        require(self.eval_chunk >= 1, f"eval_chunk must be >= 1 (got {self.eval_chunk})")
        for name in ("track_every", "track_eval_every"):
            v = getattr(self, name)
            require(v >= 0 and v % self.chunk_steps == 0,
                    f"{name} ({v}) must be 0 or a multiple of chunk_steps ({self.chunk_steps})")
        require(self.attack_samples >= 0, f"attack_samples must be >= 0 (got {self.attack_samples})")
        require(self.attack_step_size > 0, f"attack_step_size must be > 0 (got {self.attack_step_size})")
        require(self.attack_steps >= 1 and self.worst_case_steps >= 1,
                "attack_steps and worst_case_steps must be >= 1")
        require(self.track_eval_samples >= 1,
                f"track_eval_samples must be >= 1 (got {self.track_eval_samples})")
        ndev = jax.device_count()
        require(self.batch % ndev == 0,
                f"batch {self.batch} is not divisible by the {ndev} visible devices; use a multiple of {ndev}")


def derive_config(cfg: Config, cls: type[SphereTrainConfig], **changes) -> SphereTrainConfig:
    """A ``cls`` config carrying the ``SphereTrainConfig`` fields of ``cfg`` (a sweep's config),
    with ``changes`` applied: the per-point config of a sweep's sub-run."""
    fields = {f.name for f in dataclasses.fields(SphereTrainConfig)}
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k in fields}
    base.update(changes)
    return cls(**base)


def run_sub(run_dir: RunDir, name: str, experiment: str, cfg: SphereTrainConfig, *,
            progress: bool = True) -> tuple[RunDir, dict]:
    """One point of a sweep: the sub-run ``run_dir/name``, trained and evaluated unless its
    ``summary.json`` already exists (then read). Returns ``(sub_dir, summary)``."""
    from ..results import read_json

    sub_dir = RunDir.open(run_dir.path / name, experiment, cfg)
    done = sub_dir.path / "summary.json"
    return sub_dir, (read_json(done) if done.exists() else run_sphere_training(cfg, sub_dir, progress=progress))


def make_model(cfg: SphereTrainConfig):
    if cfg.model == "relu":
        return models.SphereMLP(features=tuple(cfg.widths))
    return models.QuadraticNet(hidden=cfg.hidden)


_PAPER = dict(d=500, R=1.3, batch=50, steps=1_000_000, lr=1e-4, eval_samples=10_000_000,
              chunk_steps=1000, ckpt_every=20_000)


@dataclasses.dataclass(frozen=True)
class ReluConfig(SphereTrainConfig):
    PRESETS: typing.ClassVar = {
        "quick": dict(model="relu", d=20, widths=(128, 128), batch=50, steps=3000, chunk_steps=500,
                      ckpt_every=1000, eval_samples=100_000, attack_samples=100, attack_steps=300,
                      worst_case_steps=300),
        "medium": dict(model="relu", d=500, widths=(1000, 1000), batch=50, steps=100_000,
                       chunk_steps=1000, ckpt_every=10_000, eval_samples=1_000_000),
        "paper": dict(model="relu", widths=(1000, 1000), **_PAPER),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~10 min CPU",
                             "paper": "~1-2 h on 2 CPU cores; minutes on a GPU"}


@dataclasses.dataclass(frozen=True)
class QuadraticConfig(SphereTrainConfig):
    model: Literal["relu", "quadratic"] = "quadratic"
    PRESETS: typing.ClassVar = {
        "quick": dict(model="quadratic", d=50, hidden=100, batch=50, steps=20_000, lr=1e-3,
                      chunk_steps=1000, ckpt_every=5000, eval_samples=200_000, track_every=1000,
                      track_eval_every=5000, track_eval_samples=20_000, attack_samples=100,
                      attack_steps=300, worst_case_steps=300),
        "medium": dict(model="quadratic", d=500, hidden=1000, batch=50, steps=200_000,
                       chunk_steps=1000, ckpt_every=10_000, eval_samples=1_000_000,
                       track_every=5000, track_eval_every=50_000),
        "paper": dict(model="quadratic", hidden=1000, track_every=5000, track_eval_every=50_000,
                      **_PAPER),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~15 min CPU",
                             "paper": "~1 h on 2 CPU cores; minutes on a GPU"}


def keys(seed: int) -> dict[str, jax.Array]:
    """Named, independent keys from one seed: init, data, eval (STYLE.md principle 4)."""
    root = jax.random.key(seed)
    return {name: jax.random.fold_in(root, i) for i, name in enumerate(("init", "data", "eval", "attack"))}


def make_data(cfg: SphereTrainConfig, key: jax.Array):
    if cfg.train_size:
        return sdata.make_finite_set(key, cfg.train_size, cfg.d, cfg.R)
    return train.OnlineData(key, cfg.batch, cfg.d, cfg.R)


def train_model(cfg: SphereTrainConfig, run_dir: RunDir, *, progress: bool = True,
                extra_metrics: typing.Callable[[train.TrainState], dict] | None = None,
                init_variables=None) -> tuple[train.TrainState, dict]:
    """Train (or resume) the config's model in ``run_dir``; returns ``(state, timing)``.

    Checkpoints every ``ckpt_every`` steps and at the end; logs one metrics line per chunk
    (plus ``extra_metrics(state)`` when given). On resume, metric lines after the restored step are
    dropped and recomputed, so ``metrics.jsonl`` equals an uninterrupted run's.
    """
    k = keys(cfg.seed)
    model = make_model(cfg)
    tx = train.make_optimizer(cfg.optimizer, cfg.lr)
    state = train.create_train_state(model, tx, cfg.d, key=k["init"], variables=init_variables)
    data = make_data(cfg, k["data"])
    t0 = time.time()
    with Checkpoints(run_dir.ckpt_dir) as ckpt:
        state = ckpt.restore_or(state)
        start = int(state.step)
        run_dir.truncate_metrics(start)
        prior = _read_timing(run_dir, start)
        if start == 0 and extra_metrics is not None:
            run_dir.log_metrics({"step": 0, **extra_metrics(state)})

        def on_chunk(st, m):
            step = m["step"]
            rec = dict(m)
            if extra_metrics is not None:
                rec.update(extra_metrics(st))
            run_dir.log_metrics(rec)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                ckpt.save(step, st)
                run_dir.save_json(TIMING, _timing(prior, start, step, time.time() - t0))

        state = train.train(state, data, num_steps=cfg.steps, chunk=cfg.chunk_steps,
                            batch=cfg.batch, on_chunk=on_chunk, progress=progress,
                            desc=f"train {cfg.model} d={cfg.d}")
    t = _timing(prior, start, cfg.steps, time.time() - t0)
    return state, {"train_seconds": round(t["train_seconds"], 3), "steps_timed": t["steps_timed"],
                   "steps_this_start": cfg.steps - start, "resumed_from_step": start,
                   "steps_per_second": (round(t["steps_timed"] / t["train_seconds"], 2)
                                        if t["steps_timed"] and t["train_seconds"] > 0 else None)}


TIMING = "train_timing"  # train_timing.json: training seconds summed over every start of the run


def _read_timing(run_dir: RunDir, start: int) -> dict:
    """Training time of the earlier starts, as written at the checkpoint we resumed from.

    ``steps_timed`` < ``step`` when a run began before this file existed (or was killed between a
    checkpoint and its timing record): those steps are reported as untimed rather than guessed.
    """
    p = run_dir.path / f"{TIMING}.json"
    if start == 0 or not p.exists():
        return {"train_seconds": 0.0, "steps_timed": 0}
    t = read_json(p)
    if t.get("step", -1) > start:  # a record newer than the checkpoint: cannot attribute it
        return {"train_seconds": 0.0, "steps_timed": 0}
    return {"train_seconds": float(t["train_seconds"]), "steps_timed": int(t["steps_timed"])}


def _timing(prior: dict, start: int, step: int, seconds: float) -> dict:
    return {"step": step, "train_seconds": prior["train_seconds"] + seconds,
            "steps_timed": prior["steps_timed"] + (step - start)}


def measure_error_rates(cfg: SphereTrainConfig, state: train.TrainState, *, progress: bool = True):
    variables = train.variables_of(state)
    return evaluate.two_sphere_error_rates(_batch_logits_for(state.model), variables,
                                           key=keys(cfg.seed)["eval"], d=cfg.d, R=cfg.R,
                                           n=cfg.eval_samples, chunk=cfg.eval_chunk,
                                           progress=progress)


_BATCH_LOGITS: dict = {}


def _batch_logits_for(model):
    """A stable function object per model, so evaluation compiles once per model
    (``models.batch_logits``: CPU-sized row blocks)."""
    if model not in _BATCH_LOGITS:
        _BATCH_LOGITS[model] = lambda variables, x: models.batch_logits(model, variables, x)
    return _BATCH_LOGITS[model]


def quadratic_theory(params, R: float) -> dict:
    """The quadratic net's alpha spectrum and theory error rates (Gilmer §4), host-side float64.

    Returns ``{"alpha_fraction_in_range", "alpha_below", "alpha_above", "alpha_min", "alpha_max",
    "perfect", "log10_clt_inner", "log10_clt_outer", "log10_exact_inner", "log10_exact_outer"}``
    (log10 so that rates like 1e-200 survive JSON); ``{"alpha_valid": False}`` when ``b >= 0``.
    """
    import theory

    W, w, b = (np.asarray(params[k], np.float64) for k in ("W", "w", "b"))
    if not b < 0:
        return {"alpha_valid": False}
    with jax.enable_x64(True):
        alpha = np.asarray(theory.alphas(W, w, b))
        out = {"alpha_fraction_in_range": float(theory.fraction_in_range(alpha, R)),
               "alpha_below": int((alpha < 1 / R**2).sum()), "alpha_above": int((alpha > 1).sum()),
               "alpha_min": float(alpha[0]), "alpha_max": float(alpha[-1]),
               "perfect": bool(theory.is_perfect(alpha, R))}
        ln10 = np.log(10.0)
        for sphere in ("inner", "outer"):
            out[f"log10_clt_{sphere}"] = float(theory.clt_error_rate(alpha, sphere=sphere, R=R, log=True)) / ln10
            out[f"log10_exact_{sphere}"] = float(theory.exact_error_rate(alpha, sphere=sphere, R=R, log=True)) / ln10
    return out


def make_tracker(cfg: SphereTrainConfig) -> typing.Callable[[train.TrainState], dict] | None:
    """Metrics logged during training beyond loss/accuracy: the quadratic net's alpha spectrum and
    theory error rates every ``track_every`` steps, and a measured error rate every
    ``track_eval_every`` steps (``track_eval_samples`` per sphere, a key per step)."""
    every = cfg.track_every or cfg.chunk_steps
    if cfg.model != "quadratic" and not cfg.track_eval_every:
        return None

    def track(state: train.TrainState) -> dict:
        step = int(state.step)
        out = {}
        if cfg.model == "quadratic" and step % every == 0:
            out.update(quadratic_theory(jax.device_get(state.params), cfg.R))
        if cfg.track_eval_every and step % cfg.track_eval_every == 0:
            rates = evaluate.two_sphere_error_rates(
                _batch_logits_for(state.model), train.variables_of(state),
                key=jax.random.fold_in(keys(cfg.seed)["eval"], step + 1), d=cfg.d, R=cfg.R,
                n=cfg.track_eval_samples, chunk=min(cfg.eval_chunk, cfg.track_eval_samples),
                progress=False)
            for sphere, r in rates.items():
                out[f"measured_{sphere}_errors"] = r.errors
                out[f"measured_{sphere}_n"] = r.n
        return out

    return track


def run_sphere_training(cfg: SphereTrainConfig, run_dir: RunDir, *, progress: bool = True,
                        extra_metrics=None) -> dict:
    if extra_metrics is None:
        extra_metrics = make_tracker(cfg)
    state, timing = train_model(cfg, run_dir, progress=progress, extra_metrics=extra_metrics)
    t1 = time.time()
    rates = measure_error_rates(cfg, state, progress=progress)
    eval_seconds = time.time() - t1
    metrics = run_dir.read_metrics()
    last = metrics[-1] if metrics else {}
    summary = {
        "experiment": run_dir.experiment,
        "model": cfg.model, "d": cfg.d, "R": cfg.R, "steps": cfg.steps, "batch": cfg.batch,
        "train_size": cfg.train_size, "seed": cfg.seed,
        "params": models.count_params(train.variables_of(state)),
        "final_train_loss": last.get("loss"),
        "final_train_accuracy": last.get("accuracy"),
        "error_rate": {k: v.as_dict() for k, v in rates.items()},
        "train_seconds": timing["train_seconds"], "eval_seconds": round(eval_seconds, 3),
        "steps_per_second": timing["steps_per_second"], "steps_timed": timing["steps_timed"],
        "resumed_from_step": timing["resumed_from_step"],
        "devices": jax.device_count(), "backend": jax.default_backend(),
    }
    rows = []
    if cfg.attack_samples:
        from .manifold import distance_histogram, manifold_analysis

        t2 = time.time()
        analysis, arrays = manifold_analysis(
            state.model, train.variables_of(state), d=cfg.d, R=cfg.R, key=keys(cfg.seed)["attack"],
            n=cfg.attack_samples, step_size=cfg.attack_step_size, num_steps=cfg.attack_steps,
            worst_case_steps=cfg.worst_case_steps)
        analysis["seconds"] = round(time.time() - t2, 2)
        summary["attacks"] = analysis
        run_dir.save_arrays("attacks", **arrays)
        distance_histogram(run_dir, arrays, f"{cfg.model} d={cfg.d}: nearest errors from inner-sphere points")
        rows += _attack_rows(analysis)
    if cfg.model == "quadratic":
        from .sphere_quadratic import trajectory_figure

        trajectory_figure(run_dir, [m for m in metrics if "alpha_fraction_in_range" in m],
                          f"Quadratic net, d = {cfg.d}, h = {cfg.hidden}" + (
                              f", N = {cfg.train_size:,}" if cfg.train_size else ", online"), "training")
        th = quadratic_theory(jax.device_get(state.params), cfg.R)
        summary["theory"] = th
        perfect_steps = [m["step"] for m in metrics if m.get("perfect")]
        summary["first_perfect_step"] = perfect_steps[0] if perfect_steps else None
        if th.get("alpha_valid", True):
            d = cfg.d
            rows += [
                ("alpha in [1/R^2, 1]", f"{th['alpha_fraction_in_range']:.1%} ({th['alpha_below']} below, "
                                        f"{th['alpha_above']} above of {d}); perfect: {th['perfect']}"),
                ("first perfect step", str(summary["first_perfect_step"])),
            ] + [(f"theory, {s} sphere", f"exact {_fmt_log10(th[f'log10_exact_{s}'])}, "
                                         f"CLT {_fmt_log10(th[f'log10_clt_{s}'])}")
                 for s in ("inner", "outer")]
    summary["table_rows"] = rows
    # training summed over every start (train_timing.json), then this start's evaluation and attacks
    summary["wall_seconds"] = round(timing["train_seconds"] + time.time() - t1, 3)
    run_dir.write_summary(summary)
    return summary


def _attack_rows(a: dict) -> list[tuple[str, str]]:
    on, off = a["on_manifold_nearest"], a["off_manifold_nearest"]
    n = a.get("n_correct", a["n_points"])     # summaries before start errors were counted: all
    rows = []
    if a.get("start_errors"):
        rows.append(("attack starting points", f"{a['n_points']}, of which {a['start_errors']} already "
                     f"misclassified (left out below)"))
    rows += [("on-manifold nearest error", f"found for {on['found']}/{n}"
             + (f"; distance mean {on['distance']['mean']:.4f}, median {on['distance']['median']:.4f}"
                if on["found"] else ""))]
    rows.append(("worst-case manifold attack", f"success {a['worst_case']['success']}/{n}"))
    rows.append(("off-manifold nearest error", f"found for {off['found']}/{n}"
                 + (f"; min distance {off['distance']['min']:.4f} at norm {off['norm_at_min']:.4f}, "
                    f"mean {off['distance']['mean']:.4f}" if off["found"] else "")))
    rows.append(("random inner-pair distance", f"{a['random_pair_distance']['mean']:.4f} (sqrt 2 = 1.4142)"))
    return rows


def _fmt_log10(v: float) -> str:
    if v == -np.inf:
        return "0"
    if v > -300:
        return f"{10 ** v:.3g}"
    return f"10^{v:.1f}"


def format_table(summary: dict) -> str:
    """The result table printed by ``spheres run`` / ``make run``."""
    er = summary["error_rate"]
    conf = er["inner"]["confidence"]
    rows = [("model", f"{summary['model']}  (d={summary['d']}, R={summary['R']}, "
                      f"{summary['params']:,} params)"),
            ("training", f"{summary['steps']:,} steps × batch {summary['batch']}"
                         + (f" on N={summary['train_size']:,}" if summary["train_size"] else " online")),
            ("final training loss", f"{summary['final_train_loss']:.4g}"
             if summary["final_train_loss"] is not None else "-")]
    for sphere in ("inner", "outer"):
        e = er[sphere]
        rows.append((f"error rate, {sphere} sphere",
                     f"{e['errors']}/{e['n']:,} = {e['rate']:.3g}  "
                     f"[{e['lower']:.3g}, {e['upper']:.3g}] ({conf:.0%} Clopper-Pearson)"))
    for k, label in (("train_seconds", "train time (s)"), ("eval_seconds", "eval time (s)"),
                     ("wall_seconds", "wall time (s)")):
        rows.append((label, f"{summary[k]:.1f}"))
    if summary.get("steps_per_second"):
        timed = summary.get("steps_timed", summary["steps"])
        rows.append(("training speed", f"{summary['steps_per_second']:.0f} steps/s"
                     + (f" (time recorded for the last {timed:,} of {summary['steps']:,} steps)"
                        if timed < summary["steps"] else "")))
    for extra in summary.get("table_rows", []):
        rows.append(tuple(extra))
    w = max(len(r[0]) for r in rows)
    line = "-" * (w + 2 + max(len(r[1]) for r in rows))
    return "\n".join([f"{summary['experiment']}", line] + [f"{a:<{w}}  {b}" for a, b in rows] + [line])


@register("sphere-relu", ReluConfig,
          "ReLU+BatchNorm net on the two spheres (Gilmer §3): train, error rate per sphere",
          table=format_table)
def run_relu(cfg: ReluConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    return run_sphere_training(cfg, run_dir, progress=progress)


@register("sphere-quadratic", QuadraticConfig,
          "quadratic net (Gilmer §4): train, alpha spectrum, error rate per sphere",
          table=format_table)
def run_quadratic(cfg: QuadraticConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    return run_sphere_training(cfg, run_dir, progress=progress)
