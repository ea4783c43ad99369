"""Box-constrained L-BFGS adversarial examples with a per-example search over c (Szegedy et al.
2013, §4.1).

For one example x and target label t, Szegedy et al. approximate
``min ‖r‖₂ s.t. f(x + r) = t, x + r ∈ [lo, hi]`` by solving, for a penalty c > 0,

    min_{x' ∈ [lo, hi]}  c·‖x' − x‖₂²  +  L(x', t)                              (*)

(L = cross-entropy toward the target) with box-constrained L-BFGS (`attacks.lbfgsb.LBFGSB`), and
searching over c for the smallest r that still reaches t.  The paper writes c·|r|; we use the
SQUARED norm because it is smooth at r = 0, where L-BFGS needs a gradient; both penalties trace
minimisers that move toward the boundary as c grows, and the c search picks the largest c that
still succeeds, so on a linear model the distance converges to the exact |wᵀx + b|/‖w‖₂.

c search, per example, ``c_rounds`` rounds: start at ``c_init``; after a success raise c
(×``c_factor`` until a failure brackets it), after a failure lower it (÷); once bracketed, bisect
geometrically (c = √(c_ok·c_fail)).  Every round solves (*) from x' = x; the returned point is the
smallest successful one over all rounds.  All examples (each with its own c) run as one jitted
program: the rounds of one example are ONE loop of solver iterations (a finished solve is scored
and restarted with the next c inside the same iteration), and the examples share a work pool
(`attacks._pool`): ``chunk_size`` of them are advanced together by one vmapped iteration, and a
finished example's slot goes to the next waiting one, so no example waits for a slower one.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import _model, _validate
from attacks._base import AttackResult, classification_loss, finish, is_adversarial, norm
from attacks._pool import PooledAttack, run_pool
from attacks.lbfgsb import LBFGSB, LBFGSBResult, LBFGSBState


class LBFGSAttackConfig(NamedTuple):
    c_rounds: int
    c_factor: float
    maxiter: int
    tol: float
    ftol: float
    history_size: int
    num_linesearch: int
    loss: str


class CSearchState(NamedTuple):
    c: jax.Array            # penalty of the current solve
    c_ok: jax.Array         # largest c that succeeded (0: none yet)
    c_fail: jax.Array       # smallest c that failed (inf: none yet)
    best_x: jax.Array
    best_distance: jax.Array
    best_success: jax.Array
    solver_steps: jax.Array
    round: jax.Array        # c rounds finished
    x: jax.Array            # the current solve's iterate
    solver: LBFGSBState     # the current solve's state


def _box(ex: dict):
    return (ex["lo"], ex["hi"]) if "lo" in ex else None


def _solver(config: LBFGSAttackConfig, model, ex: dict) -> LBFGSB:
    """The solver of (*) for one example: ``objective(x', c) = c‖x' − x‖² + L(x', t)``."""
    x0, target = ex["x"], ex["y"]

    def objective(xp, c):
        logits = model(xp)           # kept as the solver's aux: success is read from it
        return c * jnp.sum(jnp.square(xp - x0)) + classification_loss(logits, target, config.loss), logits

    return LBFGSB(objective, maxiter=config.maxiter, tol=config.tol, ftol=config.ftol,
                  history_size=config.history_size, num_linesearch=config.num_linesearch, has_aux=True)


def _prepare(model, config: LBFGSAttackConfig, ex: dict) -> dict:
    """Once per example: f and ∇f at x' = x, where the penalty and its gradient vanish, so every
    solve of the c search starts from the same (c-independent) state; and whether x already
    reaches t (then r = 0 is the answer)."""
    x0 = ex["x"]
    (f0, logits0), g0 = jax.value_and_grad(_solver(config, model, ex).fun, has_aux=True)(
        x0, jnp.ones((), x0.dtype))
    return {"f0": f0, "g0": g0, "logits0": logits0,
            "already": is_adversarial(logits0, ex["y"], targeted=True)}


def _new_solve(config: LBFGSAttackConfig, ex: dict, s_history, y_history) -> LBFGSBState:
    # The model is not needed: f and ∇f at x are `_prepare`'s.
    solver = LBFGSB(None, maxiter=config.maxiter, tol=config.tol, ftol=config.ftol,
                    history_size=config.history_size, num_linesearch=config.num_linesearch, has_aux=True)
    return solver.state_at(ex["x"], ex["f0"], ex["g0"], _box(ex), s_history, y_history, ex["logits0"])


def _start(config: LBFGSAttackConfig, ex: dict, previous: CSearchState | None) -> CSearchState:
    """A fresh c search for ``ex``, reusing the slot's (m, n) history buffers when it had one.
    An example that already reaches t starts finished (round = c_rounds) with r = 0."""
    x0, dtype = ex["x"], ex["x"].dtype
    if previous is None:
        zeros = jnp.zeros((config.history_size, x0.size), dtype)
        solver = _new_solve(config, ex, zeros, zeros)
    else:
        solver = _new_solve(config, ex, previous.solver.s_history, previous.solver.y_history)
    already = ex["already"]
    solver = solver._replace(result=jnp.where(already, LBFGSBResult.SUCCESS, solver.result))
    return CSearchState(c=ex["c_init"], c_ok=jnp.zeros((), dtype), c_fail=jnp.asarray(jnp.inf, dtype),
                        best_x=x0, best_distance=jnp.zeros((), dtype), best_success=already,
                        solver_steps=jnp.zeros((), jnp.int32),
                        round=jnp.where(already, config.c_rounds, 0).astype(jnp.int32),
                        x=x0, solver=solver)


def _step(model, config: LBFGSAttackConfig, ex: dict, s: CSearchState) -> CSearchState:
    """One L-BFGS iteration of the current solve; when the solve ends (converged, stalled or at
    maxiter) the same iteration scores it, picks the next c and restarts from x, so an example's
    c rounds are ONE loop of solver iterations."""
    x0, target = ex["x"], ex["y"]
    running = s.solver.result == LBFGSBResult.RUNNING
    xn, stn = _solver(config, model, ex).update(s.x, s.solver, _box(ex), s.c)
    xp = jnp.where(running, xn, s.x)
    # A solve that is not running ends in this iteration and restarts with num_pairs = 0, so the
    # history rows `update` may have written are never read: take its buffers unselected.
    keep = lambda a, b: jnp.where(running, a, b)  # noqa: E731
    st = stn._replace(**{f: jax.tree.map(keep, getattr(stn, f), getattr(s.solver, f))
                         for f in LBFGSBState._fields if f not in ("s_history", "y_history")})
    ended = st.result != LBFGSBResult.RUNNING

    success = is_adversarial(st.aux, target, targeted=True)       # the logits at xp
    distance = norm(xp - x0)
    better = ended & success & (~s.best_success | (distance < s.best_distance))
    c_ok = jnp.where(ended & success, jnp.maximum(s.c_ok, s.c), s.c_ok)
    c_fail = jnp.where(ended & ~success, jnp.minimum(s.c_fail, s.c), s.c_fail)
    c_next = jnp.where(jnp.isinf(c_fail), c_ok * config.c_factor,
                       jnp.where(c_ok == 0, c_fail / config.c_factor, jnp.sqrt(c_ok * c_fail)))
    fresh = _new_solve(config, ex, st.s_history, st.y_history)   # same buffers: no copy
    restart = lambda new, old: jnp.where(ended, new, old)  # noqa: E731
    return CSearchState(
        c=restart(c_next, s.c), c_ok=c_ok, c_fail=c_fail,
        best_x=jnp.where(better, xp, s.best_x),
        best_distance=jnp.where(better, distance, s.best_distance),
        best_success=s.best_success | (ended & success),
        solver_steps=s.solver_steps + jnp.where(ended, st.iter_num, 0),
        round=s.round + ended.astype(jnp.int32),
        x=restart(x0, xp), solver=jax.tree.map(restart, fresh, st))


def _finish(model, config: LBFGSAttackConfig, ex: dict, out) -> AttackResult:
    best_x, solver_steps = out
    return finish(model, ex["x"], ex["y"], best_x, targeted=True, loss=config.loss,
                  num_steps=solver_steps)


_POOLED = PooledAttack(
    prepare=_prepare, start=_start, step=_step,
    done=lambda config, s: s.round >= config.c_rounds,
    output=lambda s: (s.best_x, s.solver_steps), finish=_finish)


class _UnitBoxDefault:
    """The ``bounds`` default of `lbfgs`: the model's bounds, or -- for a plain function, with a
    ``DeprecationWarning`` -- the [0, 1] box this attack used before bounds belonged to the model."""

    def __repr__(self) -> str:
        return "<the model's bounds>"


MODEL_BOUNDS = _UnitBoxDefault()


def _resolve_bounds(bounds, model: _model.Resolved, is_model: bool):
    if bounds is not MODEL_BOUNDS or is_model:
        return _model.bounds_for_attack(None if bounds is MODEL_BOUNDS else bounds, model)
    warnings.warn(
        "attacks.lbfgs without bounds= on a plain function clips to [0, 1]; this default is deprecated "
        "(the input domain belongs to the model). Pass bounds=(0.0, 1.0), bounds=None for unbounded "
        "inputs, or attacks.Model(fn, bounds=...).", DeprecationWarning, stacklevel=3)
    return (0.0, 1.0)


def lbfgs(logit_fn, x, target, *, bounds=MODEL_BOUNDS, c_init=1.0, c_rounds=16, c_factor=10.0,
          maxiter=100, tol=1e-5, ftol=2.2e-9, history_size=10, num_linesearch=4, loss="ce",
          params=None, chunk_size="auto") -> AttackResult:
    """Szegedy et al.'s targeted box-constrained L-BFGS attack with a per-example c search.

    Args:
      logit_fn: the model: an `attacks.Model`, a per-example ``x -> logits`` (binary scalar or
        K-vector), ``(params, x)`` with ``params=``, or a callable pytree.
      x: ``(B, *input_shape)``.  target: ``(B,)`` target labels t (binary: 0 or 1).
      bounds: box ``(lo, hi)`` broadcastable to x, or ``None``: unbounded (sphere data).  By
        default the model's bounds (`attacks.Model(..., bounds=...)`; the convention of every
        attack); for a plain function, the paper's [0, 1] pixel box with a ``DeprecationWarning``.
      c_init: first penalty (scalar or ``(B,)``).  c_rounds: c values tried per example.
      c_factor: multiplicative step of the bracketing phase.
      maxiter, tol, ftol, history_size, num_linesearch: `LBFGSB` settings for each solve
        (4 trial steps per iteration instead of the solver's 16: a quasi-Newton step is nearly
        always accepted at t = 1 and a steepest-descent step tries t₀·4⁻ᵏ; on FC10 and
        FC100-100-10 the mean distortion is the same to 4 digits as with 8 trials and the attack
        is 1.2x / 1.5x faster; see benchmarks/lbfgs.py).
      chunk_size: examples in flight at once: a work pool (`attacks._pool`) advances that many
        solves per iteration and hands a finished example's slot to the next waiting one, so no
        example waits for the slowest of its chunk.  ``"auto"`` is `AUTO_CPU_CHUNK` slots on CPU
        and the whole batch on GPU/TPU; ``None`` forces the whole batch.  Results do not depend
        on it beyond floating-point rounding.
      loss: ``"ce"`` (cross-entropy toward t, as in the paper) or ``"margin"``.

    Returns:
      `AttackResult` (``targeted``): ``distance`` = ‖x_adv − x‖₂ (Szegedy's "distortion" is
      ``distance / sqrt(x[0].size)``); ``loss`` = −L(x_adv, t); ``num_steps`` = L-BFGS
      iterations summed over all c rounds.  If no c reaches t, ``success`` is False and
      ``x_adv = x``.  Examples already classified as t return x (distance 0) at once.

    Guarantees: x_adv in ``bounds``; among the c values tried, the smallest successful r;
    success judged on x_adv; each example's search is independent of the batch.

    Example::

        res = attacks.lbfgs(attacks.Model(f, bounds=(0.0, 1.0)), x, target)
    """
    for name, value, minimum in (("c_rounds", c_rounds, 1), ("maxiter", maxiter, 1),
                                 ("history_size", history_size, 1), ("num_linesearch", num_linesearch, 1)):
        _validate.check_int(value, name, minimum=minimum)
    _validate.check_loss(loss)
    _validate.check_tolerance(tol, "tol")
    _validate.check_tolerance(ftol, "ftol")
    if not float(c_factor) > 1.0:
        raise ValueError(f"c_factor must be > 1, got {c_factor}.")
    model = _model.resolve(logit_fn, params)
    if target is None:
        raise ValueError("attacks.lbfgs is targeted: pass the target labels (B,).")
    x, target = _validate.check_batch(x, target, label_name="target")
    c_init = _validate.check_nonnegative(c_init, "c_init", x.shape[0], x.dtype, positive=True)
    box = _validate.check_bounds(_resolve_bounds(bounds, model, isinstance(logit_fn, _model.Model)), x)
    _validate.check_model_and_labels(model, x, target, targeted=True, label_name="target")
    batch = {"x": x, "y": target, "c_init": c_init}
    if box is not None:
        batch["lo"], batch["hi"] = box
    config = LBFGSAttackConfig(c_rounds=int(c_rounds), c_factor=float(c_factor), maxiter=int(maxiter),
                               tol=float(tol), ftol=float(ftol), history_size=int(history_size),
                               num_linesearch=int(num_linesearch), loss=loss)
    slots = _chunk_size(chunk_size)
    return run_pool(_POOLED, model.fn, config, model.params, batch, slots=slots or x.shape[0],
                    # a solve ends after at most maxiter updates, or at once when x is stationary
                    max_steps=config.c_rounds * (config.maxiter + 1))


def _chunk_size(chunk_size) -> int | None:
    """``"auto"``: `AUTO_CPU_CHUNK` slots on CPU; the whole batch elsewhere (accelerators want the
    widest batch)."""
    if chunk_size == "auto":
        return AUTO_CPU_CHUNK if jax.default_backend() == "cpu" else None
    if chunk_size is not None:
        _validate.check_int(chunk_size, "chunk_size", minimum=1)
        return int(chunk_size)
    return None


# On CPU an L-BFGS iteration costs about linearly in the examples in flight (its working set, slots
# × 2·m·n history floats read ~6 times per iteration, leaves cache beyond a few slots), and a small
# pool refilled every iteration stays busy; fewer slots pay the per-iteration dispatch more often.
# 12 slots in one phase (below `_pool.TAIL_MIN_SLOTS`): on FC10 and FC100-100-10 at batches 32-256
# as fast as or faster than 8, 16, 32, or 64 slots with a packed tail, and one compiled loop body.
AUTO_CPU_CHUNK = 12
