"""Training: ``TrainState``, ``train_step`` and a chunked ``lax.scan`` loop (Gilmer et al. §3).

The paper's recipe: sigmoid cross-entropy, Adam with learning rate 1e-4, batch 50, online data.
``make_train_chunk`` compiles ``chunk`` steps into one ``lax.scan`` so the host is consulted once
per chunk; ``train`` drives chunks, fetches metrics one chunk late (the device never waits for the
host), stops with ``NonFiniteError`` naming the first bad step, and calls a hook after every chunk
(for checkpoints and metric logs).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from . import data as sdata
from ..sharding import batch_sharding, check_batch_divides, data_mesh, replicated


class NonFiniteError(FloatingPointError):
    """Loss or parameters became NaN/Inf; ``step`` is the first step where it was seen."""

    def __init__(self, step: int, what: str):
        super().__init__(f"non-finite {what} at training step {step}; lower the learning rate or "
                         f"check the data (the last checkpoint before it is intact)")
        self.step = step


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    ``step`` (int32 scalar), ``params``, ``batch_stats`` (``{}`` for models without BatchNorm),
    ``opt_state``. The model and optimiser are static fields (not saved in checkpoints).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    model: nn.Module = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def make_optimizer(name: str = "adam", learning_rate: float = 1e-4, *, schedule: str = "constant",
                   steps: int | None = None, decay_fraction: float = 0.5) -> optax.GradientTransformation:
    """``adam`` (paper default, lr 1e-4), ``sgd`` or ``momentum`` (0.9).

    ``schedule="constant"``: ``learning_rate`` throughout. ``"linear_decay"``: constant for the
    first ``(1 − decay_fraction)·steps`` steps, then linear to 0 at step ``steps`` (needs ``steps``).
    """
    if schedule == "constant":
        lr = learning_rate
    elif schedule == "linear_decay":
        if steps is None or steps < 1 or not 0 < decay_fraction <= 1:
            raise ValueError(f"linear_decay needs steps >= 1 and decay_fraction in (0, 1] "
                             f"(got steps={steps}, decay_fraction={decay_fraction})")
        decay = max(1, round(decay_fraction * steps))
        lr = optax.join_schedules([optax.constant_schedule(learning_rate),
                                   optax.linear_schedule(learning_rate, 0.0, decay)], [steps - decay])
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose constant or linear_decay")
    if name == "adam":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, sgd or momentum")


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, d: int, *,
                       key: jax.Array, variables=None) -> TrainState:
    """Initialise parameters (or take ``variables``) and the optimiser state."""
    if variables is None:
        variables = model.init(key, jnp.zeros((1, d), jnp.float32), train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState(step=jnp.asarray(0, jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), model=model, tx=tx)


def variables_of(state: TrainState) -> dict:
    """The Flax variables dict of a state (``params`` and, when present, ``batch_stats``)."""
    v = {"params": state.params}
    if state.batch_stats:
        v["batch_stats"] = state.batch_stats
    return v


def sigmoid_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean sigmoid cross-entropy, labels in {0, 1}."""
    return optax.sigmoid_binary_cross_entropy(logits, y.astype(logits.dtype)).mean()


def train_step(state: TrainState, x: jax.Array, y: jax.Array):
    """One optimiser step on a batch ``x (B, d)``, ``y (B,)``. Returns ``(state, metrics)``.

    BatchNorm (when the model has it) normalises with the batch statistics and updates the running
    averages. ``metrics = {"loss", "accuracy"}`` of the batch, before the update.
    """

    def loss_fn(params):
        if state.batch_stats:
            logits, updates = state.model.apply({"params": params, "batch_stats": state.batch_stats},
                                                x, train=True, mutable=["batch_stats"])
            new_stats = updates["batch_stats"]
        else:
            logits, new_stats = state.model.apply({"params": params}, x, train=True), state.batch_stats
        return sigmoid_loss(logits, y), (logits, new_stats)

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean((logits > 0) == (y == 1))
    new = state.replace(step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state)
    return new, {"loss": loss, "accuracy": accuracy}


class OnlineData(NamedTuple):
    """Online stream: batch ``t`` is ``online_batch(key, t, batch, d, R)``."""

    key: jax.Array
    batch: int
    d: int
    R: float


class ChunkMetrics(NamedTuple):
    """Per-chunk summary, fetched by the host once per chunk."""

    loss: jax.Array          # mean training loss over the chunk
    accuracy: jax.Array      # mean batch accuracy over the chunk
    last_loss: jax.Array
    first_bad_step: jax.Array  # first step with a non-finite loss, or -1
    params_finite: jax.Array


SCAN_UNROLL = 2
"""Training steps per iteration of the compiled scan loop (``lax.scan(unroll=...)``). With one step
per iteration XLA's copy insertion copies the 1000 × 1000 hidden kernel of ``SphereMLP`` every
step (it cannot prove the backward pass's last read of it precedes Adam's in-place write); two
steps per iteration remove that copy (benchmark (2) measures the step time). The fused programs
differ, so float rounding differs from ``unroll=1``; results agree statistically."""


def make_train_chunk(data, chunk: int, *, batch: int | None = None, mesh=None,
                     unroll: int = SCAN_UNROLL) -> Callable:
    """Compile ``chunk`` training steps into one jitted ``lax.scan``.

    ``data`` is ``OnlineData`` or a ``spheres.data.FiniteSet`` (then ``batch`` is required).
    Returns ``run(state) -> (state, ChunkMetrics)``; the data of step ``t`` depends only on ``t``,
    so a chunk started from a restored state continues exactly. The batch is sharded over the
    ``data`` mesh (parameters replicated); under jit, BatchNorm statistics are global-batch
    statistics, so sharded and single-device training agree to float tolerance. ``unroll`` steps
    run per loop iteration (see ``SCAN_UNROLL``); any ``chunk`` works (the scan runs a remainder).
    """
    if unroll < 1:
        raise ValueError(f"unroll must be >= 1 (got {unroll})")
    mesh = data_mesh() if mesh is None else mesh
    finite = isinstance(data, sdata.FiniteSet)
    batch = data.batch if not finite else batch
    if batch is None:
        raise ValueError("make_train_chunk needs `batch` for a finite training set")
    check_batch_divides(batch, mesh)
    xs_sharding = batch_sharding(mesh)
    if finite:
        per_epoch = sdata.steps_per_epoch(data.x.shape[0], batch)

    d_static, R_static = (None, None) if finite else (data.d, data.R)

    def run(state: TrainState, arrays):
        step0 = state.step
        data = arrays

        def get_batch(step, perm):
            if finite:
                return sdata.finite_batch(data, perm, step, batch)
            return sdata.online_batch(arrays, step, batch, d_static, R_static)

        def body(carry, _):
            state, perm = carry
            step = state.step
            if finite:
                perm = jax.lax.cond(step % per_epoch == 0,
                                    lambda: sdata.epoch_permutation(data, step // per_epoch),
                                    lambda: perm)
            x, y = get_batch(step, perm)
            x = jax.lax.with_sharding_constraint(x, xs_sharding)
            y = jax.lax.with_sharding_constraint(y, xs_sharding)
            state, m = train_step(state, x, y)
            return (state, perm), m

        perm0 = sdata.epoch_permutation(data, step0 // per_epoch) if finite else jnp.zeros((), jnp.int32)
        (state, _), ms = jax.lax.scan(body, (state, perm0), None, length=chunk, unroll=min(unroll, chunk))
        bad = ~jnp.isfinite(ms["loss"])
        first_bad = jnp.where(bad.any(), step0 + jnp.argmax(bad), -1)
        params_finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(p))
                                             for p in jax.tree_util.tree_leaves(state.params)]))
        return state, ChunkMetrics(ms["loss"].mean(), ms["accuracy"].mean(), ms["loss"][-1],
                                   first_bad.astype(jnp.int32), params_finite)

    jitted = jax.jit(run)
    rep = replicated(mesh)
    arrays = data if finite else data.key

    def call(state: TrainState) -> tuple[TrainState, ChunkMetrics]:
        return jitted(jax.device_put(state, rep), arrays)  # no-op once placed

    call.replicate = lambda tree: jax.device_put(tree, rep)  # place a state on the mesh
    call.jitted = jitted
    return call


def train(state: TrainState, data, *, num_steps: int, chunk: int, batch: int | None = None,
          mesh=None, on_chunk: Callable[[TrainState, dict], None] | None = None,
          progress: bool = True, desc: str = "train") -> TrainState:
    """Train from ``state.step`` up to ``num_steps`` in chunks of ``chunk`` steps.

    ``num_steps`` must be a multiple of ``chunk`` so that checkpoints fall on chunk boundaries and a
    resumed run takes exactly the same steps. After every chunk ``on_chunk(state, metrics)`` is
    called with host-side metrics ``{"step", "loss", "accuracy", "last_loss"}`` (one chunk late for
    the metrics' fetch; ``state`` is the state at the end of that chunk). Raises ``NonFiniteError``.
    """
    from tqdm.auto import tqdm

    if num_steps % chunk:
        raise ValueError(f"steps ({num_steps}) must be a multiple of chunk_steps ({chunk})")
    run_chunk = make_train_chunk(data, chunk, batch=batch, mesh=mesh)
    state = run_chunk.replicate(state)
    start = int(state.step)
    if start % chunk:
        raise ValueError(f"state is at step {start}, not a multiple of chunk_steps ({chunk})")
    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=not progress, unit="step",
               mininterval=1.0)
    pending = None  # (state, metrics) of the previous chunk, fetched one chunk late

    def flush(item):
        st, m = item
        m = jax.device_get(m)
        end = int(st.step)
        if int(m.first_bad_step) >= 0:
            raise NonFiniteError(int(m.first_bad_step), "loss")
        if not bool(m.params_finite):
            raise NonFiniteError(end - chunk, f"parameters (within steps {end - chunk}..{end - 1})")
        host = {"step": end, "loss": float(m.loss), "accuracy": float(m.accuracy),
                "last_loss": float(m.last_loss)}
        bar.update(chunk)
        bar.set_postfix(loss=f"{host['loss']:.4g}")
        if on_chunk is not None:
            on_chunk(st, host)

    try:
        for _ in range(start, num_steps, chunk):
            state, metrics = run_chunk(state)
            if pending is not None:
                flush(pending)
            pending = (state, metrics)
        if pending is not None:
            flush(pending)
    finally:
        bar.close()
    return state
