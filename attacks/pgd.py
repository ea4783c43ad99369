"""Projected gradient descent in an L∞ or L2 ball, with an optional box (Madry et al. 2018).

One example, pure ``init`` / ``step`` over `PGDState`, driven by `attacks._base.iterate`:

    x_{k+1} = Π_box( Π_ball(x₀, ε)( x_k + α·u(∇ₓ J(x_k)) ) ),   u = sign (L∞) or g/‖g‖₂ (L2)

where J is the adversarial objective (`attacks._base.adversarial_objective`) and the ball is
centred on the ORIGINAL point x₀ (the box clip after the ball projection keeps the point in the
ball, because x₀ itself is in the box).  The random start is uniform in the ball: L∞ uniform per
coordinate; L2 a uniform direction times ε·U^(1/n), n = number of input entries (radius drawn
∝ U^(1/n) is what makes the start uniform in volume).  The returned point is the best iterate
over all steps and restarts -- successful beats unsuccessful, then higher objective -- never
simply the last one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import _base, _model, _validate
from attacks._base import (AttackResult, ascent_objective, clip_to_box, finish,
                           is_adversarial, iterate, safe_normalize)

NORMS = ("linf", "l2")


class PGDConfig(NamedTuple):
    norm: str
    loss: str
    targeted: bool
    num_steps: int
    restarts: int
    random_start: bool
    early_stop: bool
    keep_best: bool


class PGDState(NamedTuple):
    x: jax.Array            # current iterate
    best_x: jax.Array
    best_objective: jax.Array
    best_success: jax.Array


def ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
    """Steepest ascent direction of unit ``norm``: ``sign(g)`` (L∞) or ``g/‖g‖₂`` (L2, 0 if g = 0)."""
    return jnp.sign(grad) if norm == "linf" else safe_normalize(grad)


def project_ball(x: jax.Array, center: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """Euclidean projection of ``x`` onto ``{v : ‖v − center‖ ≤ eps}`` (L∞ or L2)."""
    delta = x - center
    if norm == "linf":
        return center + jnp.clip(delta, -eps, eps)
    n = jnp.sqrt(jnp.sum(jnp.square(delta)))
    scale = jnp.where(n > eps, eps / jnp.where(n > 0, n, 1.0), 1.0)
    return center + delta * scale


def random_start(key: jax.Array, x: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """A point uniform in the ε-ball around ``x`` (L∞: per coordinate; L2: radius ε·U^(1/n))."""
    if norm == "linf":
        return x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
    k_dir, k_rad = jax.random.split(key)
    direction = safe_normalize(jax.random.normal(k_dir, x.shape, x.dtype))
    radius = eps * jax.random.uniform(k_rad, (), x.dtype) ** (1.0 / x.size)
    return x + radius * direction


def _better(success, objective, best_success, best_objective):
    return (success & ~best_success) | ((success == best_success) & (objective > best_objective))


def _pgd_example(model, config: PGDConfig, ex: dict) -> AttackResult:
    x0, y, eps, step_size = ex["x"], ex["y"], ex["eps"], ex["step_size"]

    def evaluate(x):
        logits = model(x)
        objective = ascent_objective(logits, y, loss=config.loss, targeted=config.targeted)
        return objective, logits

    value_and_grad = jax.value_and_grad(evaluate, has_aux=True)

    def record(state: PGDState, x, objective, logits) -> PGDState:
        success = is_adversarial(logits, y, targeted=config.targeted)
        better = _better(success, objective, state.best_success, state.best_objective)
        if not config.keep_best:  # FGSM: the stepped point is the answer
            better = jnp.ones((), bool)
        return state._replace(
            best_x=jnp.where(better, x, state.best_x),
            best_objective=jnp.where(better, objective, state.best_objective),
            best_success=jnp.where(better, success, state.best_success))

    def step(i, state: PGDState) -> PGDState:
        # Evaluate the current iterate once: its gradient drives the step and its value
        # updates the best iterate (one forward-backward per step, no extra forward).
        (objective, logits), grad = value_and_grad(state.x)
        state = record(state, state.x, objective, logits)
        x = state.x + step_size * ascent_direction(grad, config.norm)
        x = clip_to_box(project_ball(x, x0, eps, config.norm), ex)
        return state._replace(x=x)

    def done(state: PGDState):
        return state.best_success

    def restart(r, carry):
        state, steps = carry
        if config.random_start:
            start = random_start(jax.random.fold_in(ex["key"], r), x0, eps, config.norm)
            start = clip_to_box(start, ex)
        else:
            start = x0
        state = state._replace(x=start)
        state, run = iterate(step, state, config.num_steps, done=done if config.early_stop else None)
        # The last iterate has not been evaluated inside the loop.
        objective, logits = evaluate(state.x)
        state = record(state, state.x, objective, logits)
        return state, steps + run

    dtype = jax.eval_shape(evaluate, x0)[0].dtype        # the model may compute in another dtype
    state = PGDState(x=x0, best_x=x0, best_objective=jnp.asarray(-jnp.inf, dtype),
                     best_success=jnp.zeros((), bool))
    state, steps = jax.lax.fori_loop(0, config.restarts, restart, (state, jnp.zeros((), jnp.int32)))
    return finish(model, x0, y, state.best_x, targeted=config.targeted, loss=config.loss,
                  num_steps=steps, distance_norm=config.norm)


class Prepared(NamedTuple):
    """A validated call: the model, the per-example inputs, the per-budget inputs (a list of
    budgets) and the one key the program splits (see `attacks._base.execute`)."""

    model: _model.Resolved
    batch: dict
    per_eps: dict | None
    key: jax.Array | None
    num_classes: int


def prepare(logit_fn, x, y, *, eps=None, epsilons=None, norm, params=None, bounds=None,
            targeted=False, loss="ce", key=None, need_key=False, step_size=None, num_steps=1,
            scale_step=True, losses=_base.LOSSES) -> Prepared:
    """Shared validation for the fixed-budget attacks (FGSM, PGD, APGD).

    Model-free checks come first, the (shape-only) model evaluation and the labels last.  The
    budget is ``eps`` (scalar or ``(B,)``) or ``epsilons`` (``(E,)``, one result per budget).
    ``step_size=None`` with ``scale_step``: Madry et al.'s ``2.5·ε/num_steps`` per budget.
    """
    _validate.check_choice(norm, "norm", NORMS)
    _validate.check_loss(loss, losses)
    model = _model.resolve(logit_fn, params)
    label_name = "target" if targeted else "y"
    x, y = _validate.check_batch(x, y, label_name=label_name)
    b = x.shape[0]
    eps, epsilons = _validate.check_eps_or_epsilons(eps, epsilons, b, x.dtype)
    box = _validate.check_bounds(_model.bounds_for_attack(bounds, model), x)
    keys, shared_key = _validate.check_key(key, b) if need_key else (None, None)
    per_eps = None if epsilons is None else {"eps": epsilons}
    batch = {"x": x}
    if step_size is not None:
        batch["step_size"] = _validate.check_nonnegative(step_size, "step_size", b, x.dtype)
    elif scale_step:           # Madry et al.'s heuristic, per budget
        if per_eps is None:
            batch["step_size"] = 2.5 * eps / max(num_steps, 1)
        else:
            per_eps["step_size"] = 2.5 * epsilons / max(num_steps, 1)
    k, y = _validate.check_model_and_labels(model, x, y, targeted=targeted, label_name=label_name,
                                            min_classes=3 if loss == "dlr" else 2)
    batch["y"] = y
    if eps is not None:
        batch["eps"] = eps
    if box is not None:
        batch["lo"], batch["hi"] = box
    if keys is not None:
        batch["key"] = keys
    return Prepared(model, batch, per_eps, shared_key, k)


def run(attack, prepared: Prepared, config) -> AttackResult:
    """`attacks._base.execute` on a `Prepared` call (extra arguments only when they are used)."""
    extra = {k: v for k, v in (("per_eps", prepared.per_eps), ("key", prepared.key)) if v is not None}
    return _base.execute(attack, prepared.model.fn, config, prepared.model.params, prepared.batch, **extra)


def pgd(logit_fn, x, y=None, *, eps=None, epsilons=None, norm="linf", step_size=None, num_steps=10,
        bounds=None, random_start=True, restarts=1, key=None, targeted=False, loss="ce",
        early_stop=False, params=None) -> AttackResult:
    """Projected gradient descent (PGD) in the L∞ or L2 ε-ball around each example.

    Args:
      logit_fn: the model: an `attacks.Model`, a per-example ``x -> logits`` (scalar: binary,
        positive = class 1; ``(K,)``: K classes), ``(params, x) -> logits`` with ``params=``, or
        a callable pytree (Equinox module).
      x: ``(B, *input_shape)`` inputs.  y: ``(B,)`` true labels, or target labels if ``targeted``;
        ``None`` (untargeted only): the model's predicted labels.
      eps: ball radius, scalar or per-example ``(B,)`` (as `attacks.minimal_epsilon` passes).
      epsilons: instead of ``eps``, a sequence of E radii: one call, every result field gets a
        leading ε axis (see `AttackResult`).
      norm: ``"linf"`` or ``"l2"``.
      step_size: α, scalar or ``(B,)``; default ``2.5·ε/num_steps`` (Madry et al.), per budget.
      num_steps: gradient steps per restart.  restarts: independent random starts; the best
        point over all of them is returned per example.
      bounds: ``None`` (the model's input domain, see `attacks`) or ``(lo, hi)`` broadcastable to
        ``x``; applied after the ball projection.
      random_start: start uniformly in the ball (needs ``key``); else start at ``x``.
      key: one PRNG key, or ``(B,)`` per-example keys (one key k acts as ``split(k, B)``).
      targeted, loss: objective ``−L(x, y)`` toward target ``y``; ``L`` = ``"ce"`` or ``"margin"``.
      early_stop: stop each example at its first success (``while_loop``); default runs all steps
        (``fori_loop``) and keeps the highest-objective successful point.
      params: optional pytree passed as ``logit_fn(params, x)``; changing it does not recompile.

    Returns:
      `AttackResult`; ``distance`` is in ``norm``; ``num_steps`` sums steps over restarts.

    Guarantees: ``‖x_adv − x‖ ≤ ε`` (up to rounding), ``x_adv`` in ``bounds``, success judged on
    ``x_adv``, same ``key`` -> same result, example i does not depend on the rest of the batch.

    Example::

        res = attacks.pgd(f, x, y, eps=0.1, norm="l2", num_steps=20, key=jax.random.key(0))
    """
    num_steps = _validate.check_int(num_steps, "num_steps", minimum=0)
    restarts = _validate.check_int(restarts, "restarts", minimum=1)
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (otherwise every restart is identical).")
    prepared = prepare(logit_fn, x, y, eps=eps, epsilons=epsilons, norm=norm, params=params,
                       bounds=bounds, targeted=targeted, loss=loss, key=key, need_key=random_start,
                       step_size=step_size, num_steps=num_steps)
    config = PGDConfig(norm=norm, loss=loss, targeted=bool(targeted), num_steps=num_steps,
                       restarts=restarts, random_start=bool(random_start),
                       early_stop=bool(early_stop), keep_best=True)
    return run(_pgd_example, prepared, config)
