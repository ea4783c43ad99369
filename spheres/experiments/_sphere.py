"""The run machinery of every sphere experiment, and nothing paper-specific.

`SphereTrainConfig` holds the fields every sphere run has. `train_in_run` trains (or resumes) the
config's model in a run directory with checkpoints, one metrics line per chunk and the training
time summed over every start; `run_sphere_training` is a whole train-evaluate-attack run and its
summary; `run_sub` runs one member of a sweep in a sub-directory; `training_table` renders a
training summary. Keys come from `keys(seed)`: the streams ``init``, ``data``, ``eval`` and
``attack`` with pinned ids, so archived runs reproduce.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import Literal

import jax
import numpy as np

from .. import plots
from ..checkpoint import Checkpoints
from ..config import Config, mlp_memory_estimate, require
from ..keys import named_keys
from ..results import RunDir, read_json
from ..sharding import devices_phrase
from ..sphere import data as sdata
from ..sphere import bracket, evaluate, manifold, models, train
from ..sphere.quadratic import alphas_of, quadratic_theory

SPHERE_STREAMS = {"init": 0, "data": 1, "eval": 2, "attack": 3}
TIMING = "train_timing"  # train_timing.json: training seconds summed over every start of the run


def keys(seed: int) -> dict[str, jax.Array]:
    """The keys of a sphere run: ``init``, ``data``, ``eval``, ``attack`` (`spheres.keys`)."""
    return named_keys(seed, SPHERE_STREAMS)


@dataclasses.dataclass(frozen=True)
class SphereTrainConfig(Config):
    """Training and evaluation of one sphere model.

    ``train_size = 0`` means online data (a fresh batch every step); ``N > 0`` a fixed set of N
    points, reshuffled every epoch. ``steps`` and ``ckpt_every`` are multiples of ``chunk_steps``.
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
    # ReLU net options (defaults: the behaviour every archived run had)
    bn_momentum: float = 0.99     # BatchNorm running-average momentum
    bn_epsilon: float = 1e-5      # BatchNorm variance epsilon (Flax's default; TensorFlow's is 1e-3)
    init: Literal["lecun_normal", "glorot_uniform"] = "lecun_normal"   # Dense kernels (Flax / TensorFlow)
    lr_schedule: Literal["constant", "linear_decay"] = "constant"     # linear_decay: to 0 over the last
    decay_fraction: float = 0.5                                        #   decay_fraction of the steps
    bn_stats: Literal["running", "population"] = "running"  # evaluation: running averages, or exact
    population_samples: int = 1_000_000                      #   statistics on this many fresh points
    eval_dtype: Literal["float32", "float64"] = "float32"    # evaluation precision (same parameters)
    nonfinite: Literal["error", "count"] = "error"   # non-finite logits in evaluation: fail, or count as errors

    # a finished run reopened with other values of these re-evaluates from its final checkpoint
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = (
        "eval_samples", "eval_chunk", "attack_samples", "attack_steps", "worst_case_steps",
        "attack_step_size", "track_eval_samples", "nonfinite")

    def validate(self) -> None:
        require(self.d >= 2, f"d must be >= 2 (got {self.d})")
        require(self.d <= 10**6, f"d must be <= 1e6 (got {self.d})")
        require(max((self.hidden, *self.widths)) <= 10**7, "hidden and widths must be <= 1e7")
        require(self.R > 1, f"R must be > 1 (the outer radius; got {self.R})")
        require(self.R <= 100, f"R must be <= 100 (the outer radius; got {self.R})")
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
        require(1 <= self.eval_samples <= 10**13, f"eval_samples must be in [1, 1e13] (got {self.eval_samples})")
        require(1 <= self.eval_chunk <= 2**24, f"eval_chunk must be in [1, 2**24] (got {self.eval_chunk})")
        require(-(-self.eval_samples // self.eval_chunk) < 2**31,
                f"eval_samples / eval_chunk must be < 2**31 chunks; raise eval_chunk")
        require(self.steps <= 10**12, f"steps must be <= 1e12 (got {self.steps})")
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
        require(0 <= self.bn_momentum < 1, f"bn_momentum must be in [0, 1) (got {self.bn_momentum})")
        require(self.bn_epsilon > 0 and np.isfinite(self.bn_epsilon),
                f"bn_epsilon must be positive, e.g. 1e-5 (Flax) or 1e-3 (TensorFlow) (got {self.bn_epsilon})")
        require(self.init in models.KERNEL_INITS,
                f"init must be one of {', '.join(models.KERNEL_INITS)} (got {self.init!r})")
        require(self.lr_schedule in ("constant", "linear_decay"),
                f"lr_schedule must be constant or linear_decay (got {self.lr_schedule!r})")
        require(0 < self.decay_fraction <= 1, f"decay_fraction must be in (0, 1] (got {self.decay_fraction})")
        require(self.bn_stats in ("running", "population"),
                f"bn_stats must be running or population (got {self.bn_stats!r})")
        require(self.bn_stats == "running" or self.model == "relu",
                f"bn_stats=population needs model=relu (the {self.model} net has no BatchNorm)")
        require(self.population_samples >= 2,
                f"population_samples must be >= 2 (got {self.population_samples})")
        require(self.eval_dtype in ("float32", "float64"),
                f"eval_dtype must be float32 or float64 (got {self.eval_dtype!r})")

    def preflight(self) -> None:
        """The batch splits over every device of the run (checked on the final config, so that
        ``--set batch=...`` can fix a preset's batch for the device count)."""
        ndev = jax.device_count()
        require(self.batch % ndev == 0,
                f"batch {self.batch} is not divisible by the {devices_phrase()}; use a multiple of {ndev}")

    def memory_estimate(self) -> dict[str, int]:
        """Bytes of the largest arrays (`spheres.config.mlp_memory_estimate`)."""
        relu = self.model == "relu"
        return mlp_memory_estimate((self.d, *self.widths, 1) if relu else (self.d, self.hidden, 1),
                                   "widths" if relu else "hidden", eval_chunk=3 * self.eval_chunk,
                                   batch=4 * self.batch, attack_samples=4 * self.attack_samples,
                                   track_eval_samples=3 * min(self.eval_chunk, self.track_eval_samples)
                                   * bool(self.track_eval_every), train_size=self.train_size)


# The paper's recipe (Gilmer §3): d = 500, Adam 1e-4, batch 50, 10^6 online steps, 10^7 points per sphere.
PAPER_RECIPE = dict(d=500, R=1.3, batch=50, steps=1_000_000, lr=1e-4, eval_samples=10_000_000,
                    chunk_steps=1000, ckpt_every=20_000)

# The quadratic-net experiments' quick and medium schedules (each preset adds its d, h and sizes).
QUADRATIC_QUICK = dict(model="quadratic", batch=50, lr=1e-3, chunk_steps=1000, ckpt_every=5000,
                       eval_samples=200_000, track_every=1000, track_eval_every=5000)
QUADRATIC_MEDIUM = dict(model="quadratic", batch=50, steps=200_000, chunk_steps=1000, ckpt_every=10_000,
                        eval_samples=1_000_000, track_every=5000, track_eval_every=50_000)


def derive_config(cfg: Config, cls: type[SphereTrainConfig] = SphereTrainConfig, **changes) -> SphereTrainConfig:
    """A ``cls`` config carrying the `SphereTrainConfig` fields of ``cfg`` (a sweep's config), with
    ``changes`` applied: the config of one member of a sweep."""
    fields = {f.name for f in dataclasses.fields(SphereTrainConfig)}
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k in fields}
    base.update(changes)
    return cls(**base)


def make_model(cfg: SphereTrainConfig):
    if cfg.model == "relu":
        return models.SphereMLP(features=tuple(cfg.widths), momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                                kernel_init=cfg.init)
    return models.QuadraticNet(hidden=cfg.hidden)


def make_data(cfg: SphereTrainConfig, key: jax.Array):
    if cfg.train_size:
        return sdata.make_finite_set(key, cfg.train_size, cfg.d, cfg.R)
    return train.OnlineData(key, cfg.batch, cfg.d, cfg.R)


def initial_state(cfg: SphereTrainConfig, init_variables=None) -> train.TrainState:
    """The config's model and optimiser at step 0 (``init_variables`` or a fresh init)."""
    tx = train.make_optimizer(cfg.optimizer, cfg.lr, schedule=cfg.lr_schedule, steps=cfg.steps,
                              decay_fraction=cfg.decay_fraction)
    return train.create_train_state(make_model(cfg), tx, cfg.d, key=keys(cfg.seed)["init"],
                                    variables=init_variables)


def train_in_run(cfg: SphereTrainConfig, run_dir: RunDir, *, progress: bool = True,
                 extra_metrics: typing.Callable[[train.TrainState], dict] | None = None,
                 init_variables=None) -> tuple[train.TrainState, dict]:
    """Train (or resume) the config's model in ``run_dir``; returns ``(state, timing)``.

    Checkpoints every ``ckpt_every`` steps and at the end; logs one metrics line per chunk (plus
    ``extra_metrics(state)`` when given). On resume, metric lines after the restored step are
    dropped and recomputed, so ``metrics.jsonl`` equals an uninterrupted run's.
    """
    state = initial_state(cfg, init_variables)
    data = make_data(cfg, keys(cfg.seed)["data"])
    t0 = time.time()
    with Checkpoints(run_dir.ckpt_dir) as ckpt:
        state = ckpt.restore_or(state, final_step=cfg.steps)
        start = int(state.step)
        # from step 0 every line is rewritten (a kill before the first checkpoint leaves a step-0 line)
        run_dir.truncate_metrics(start if start > 0 else -1)
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


def final_state(cfg: SphereTrainConfig, run_dir: RunDir) -> train.TrainState:
    """The trained state of a finished run, restored from its last checkpoint."""
    with Checkpoints(run_dir.ckpt_dir) as ck:
        return ck.restore_or(initial_state(cfg))


def _read_timing(run_dir: RunDir, start: int) -> dict:
    """Training time of the earlier starts, as written at the checkpoint resumed from.

    ``steps_timed`` < ``step`` when the timing record is missing (a kill between a checkpoint and
    its timing record): those steps are reported as untimed rather than guessed.
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
    """Error rate per sphere on ``eval_samples`` points each (key ``eval``), with the config's
    ``bn_stats`` and ``eval_dtype`` (`eval_model`)."""
    model, variables = eval_model(cfg, state)
    with jax.enable_x64(cfg.eval_dtype == "float64"):
        return evaluate.two_sphere_error_rates(models.logit_fns(model).batched, variables,
                                               key=keys(cfg.seed)["eval"], d=cfg.d, R=cfg.R,
                                               n=cfg.eval_samples, chunk=cfg.eval_chunk, progress=progress,
                                               nonfinite=cfg.nonfinite)


def eval_model(cfg: SphereTrainConfig, state: train.TrainState):
    """``(model, variables)`` evaluated: with ``bn_stats="population"`` the BatchNorm statistics are
    recomputed exactly (`models.population_batch_stats`) on ``population_samples`` fresh training-
    distribution points (key ``fold_in(eval, 2³¹ − 1)``); with ``eval_dtype="float64"`` the model computes
    in float64 on the same parameters (call it under ``jax.enable_x64``)."""
    model, variables = state.model, train.variables_of(state)
    if cfg.bn_stats == "population":
        key, chunk = jax.random.fold_in(keys(cfg.seed)["eval"], 2**31 - 1), 10_000

        def sample():
            for i in range(0, cfg.population_samples, chunk):
                m = min(chunk, cfg.population_samples - i)
                yield np.asarray(sdata.sample_two_spheres(jax.random.fold_in(key, i), m, cfg.d, cfg.R)[0])

        variables = {**variables, "batch_stats": models.population_batch_stats(model, variables, sample)}
    dtype = np.float64 if cfg.eval_dtype == "float64" else np.float32
    if cfg.eval_dtype == "float64" and cfg.model == "relu":
        model = model.clone(dtype=np.float64)
    return model, jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), jax.device_get(variables))


# The eval key's stream for exact d(E) points: beyond any fold_in(eval, step + 1) of the tracker
# (2**31 − 1 is eval_model's).
DISTANCE_STREAM = 2**31 - 2


def distance_vs_bound(cfg: SphereTrainConfig, alpha) -> dict:
    """``bracket.exact_distance_vs_bound`` of a quadratic net's ``alpha (d,)`` with the run's own
    points (the eval key's ``DISTANCE_STREAM``): the same points in every experiment and rerun."""
    return bracket.exact_distance_vs_bound(alpha, d=cfg.d, R=cfg.R,
                                           key=jax.random.fold_in(keys(cfg.seed)["eval"], DISTANCE_STREAM))


def make_tracker(cfg: SphereTrainConfig) -> typing.Callable[[train.TrainState], dict] | None:
    """Metrics logged during training beyond loss/accuracy: the quadratic net's α spectrum and
    theory error rates every ``track_every`` steps, and a measured error rate every
    ``track_eval_every`` steps (``track_eval_samples`` per sphere, key ``fold_in(eval, step + 1)``)."""
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
                models.logit_fns(state.model).batched, train.variables_of(state),
                key=jax.random.fold_in(keys(cfg.seed)["eval"], step + 1), d=cfg.d, R=cfg.R,
                n=cfg.track_eval_samples, chunk=min(cfg.eval_chunk, cfg.track_eval_samples),
                progress=False, nonfinite=cfg.nonfinite)
            for sphere, r in rates.items():
                out[f"measured_{sphere}_errors"] = r.errors
                out[f"measured_{sphere}_n"] = r.n
        return out

    return track


def run_sphere_training(cfg: SphereTrainConfig, run_dir: RunDir, *, progress: bool = True,
                        extra_metrics=None) -> dict:
    """Train, measure the error rate per sphere, attack (``attack_samples`` > 0) and, for the
    quadratic net, add its α spectrum and theory rates; writes and returns the summary."""
    if extra_metrics is None:
        extra_metrics = make_tracker(cfg)
    state, timing = train_in_run(cfg, run_dir, progress=progress, extra_metrics=extra_metrics)
    t1 = time.time()
    rates = measure_error_rates(cfg, state, progress=progress)
    eval_seconds = time.time() - t1
    metrics = run_dir.read_metrics()
    last = metrics[-1] if metrics else {}
    summary = {
        "experiment": run_dir.experiment, "preset": run_dir.preset,
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
    if cfg.attack_samples:
        t2 = time.time()
        analysis, arrays = manifold.manifold_analysis(
            state.model, train.variables_of(state), d=cfg.d, R=cfg.R, key=keys(cfg.seed)["attack"],
            n=cfg.attack_samples, step_size=cfg.attack_step_size, num_steps=cfg.attack_steps,
            worst_case_steps=cfg.worst_case_steps)
        analysis["seconds"] = round(time.time() - t2, 2)
        summary["attacks"] = analysis
        run_dir.save_arrays("attacks", **arrays)
        run_dir.save_figure("nearest_error_distances", plots.distance_histogram(
            arrays, f"{cfg.model} d={cfg.d}: nearest errors from inner-sphere points"))
    if cfg.model == "quadratic":
        fig = plots.trajectory_figure([m for m in metrics if "alpha_fraction_in_range" in m],
                                      f"Quadratic net, d = {cfg.d}, h = {cfg.hidden}" + (
                                          f", N = {cfg.train_size:,}" if cfg.train_size else ", online"))
        if fig is not None:
            run_dir.save_figure("training", fig)
        summary["theory"] = quadratic_theory(jax.device_get(state.params), cfg.R)
        summary["distance_vs_bound"] = distance_vs_bound(cfg, alphas_of(state.params))
        perfect_steps = [m["step"] for m in metrics if m.get("perfect")]
        summary["first_perfect_step"] = perfect_steps[0] if perfect_steps else None
    # training summed over every start (train_timing.json), then this start's evaluation and attacks
    summary["wall_seconds"] = round(timing["train_seconds"] + time.time() - t1, 3)
    run_dir.write_summary(summary)
    return summary


def run_sub(run_dir: RunDir, name: str, experiment: str, cfg: SphereTrainConfig, *,
            progress: bool = True) -> tuple[RunDir, dict]:
    """One member of a sweep: the sub-run ``run_dir/name``, trained and evaluated unless its
    ``summary.json`` already exists (then read). Returns ``(sub_dir, summary)``."""
    with RunDir.open(run_dir.path / name, experiment, cfg) as sub_dir:
        sub_dir.set_origin(run_dir.preset, run_dir.overrides)     # a member of the sweep's preset
        sub_dir.reevaluate = run_dir.reevaluate or sub_dir.config_changed
        if sub_dir.summary is not None and not sub_dir.reevaluate:
            return sub_dir, sub_dir.summary
        return sub_dir, run_sphere_training(cfg, sub_dir, progress=progress)


# tables: spheres.experiments._sphere_tables (re-exported here for the experiment files)
from ._sphere_tables import attack_rows, provenance, theory_rows, training_table  # noqa: E402,F401
