"""Manifold attack on a sphere (Gilmer et al. 2018, "Adversarial Spheres", §5).

Like PGD, but the constraint is ‖x̂‖ = r (the starting sphere, r = ‖x‖, or a given ``radius``).
One step, for one example:

    t   = ∇J − (∇J·x̂)x̂ / ‖…‖          (unit tangent direction of the objective's gradient)
    x' = r·(x + α t)/‖x + α t‖            (normalised step, then rescale back to the sphere)

Using the tangent part of the gradient makes the step length α exact; the radial part would be
undone by the rescaling anyway.  Two modes:

* ``"worst_case"``: maximise J for all ``num_steps`` (``lax.fori_loop``).  A step is accepted only
  if it raises J, otherwise α is halved (monotone ascent), so the iterate converges to a local
  maximum of J on the sphere instead of oscillating around it; the current iterate is the best.
* ``"nearest"``: step until the first misclassification (``lax.while_loop``, each example stops
  on its own), then tighten: bisect along the great-circle arc (slerp) from the start to the
  error found, keeping only points that are still errors, so the returned point is an error on
  the sphere no farther along the arc than the first one found.  Report ‖x_adv − x‖₂.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attacks import _base, _model, _validate
from attacks._base import (AttackResult, ascent_objective, finish, is_adversarial,
                           iterate, safe_normalize)

MODES = ("nearest", "worst_case")


class SphereConfig(NamedTuple):
    mode: str
    loss: str
    targeted: bool
    num_steps: int
    refine_steps: int
    random_start: bool


class SphereState(NamedTuple):
    x: jax.Array            # current point, on the sphere
    objective: jax.Array    # J(x) (worst_case)
    grad: jax.Array         # ∇J(x) (worst_case)
    step_size: jax.Array
    found: jax.Array        # x is misclassified (nearest)
    moves: jax.Array        # gradient steps taken


def project_to_sphere(x: jax.Array, radius: jax.Array) -> jax.Array:
    """``radius · x / ‖x‖₂`` (one example, any shape)."""
    return radius * safe_normalize(x)


def tangent_direction(grad: jax.Array, x: jax.Array) -> jax.Array:
    """Unit tangent component of ``grad`` at ``x`` on the sphere (0 if it vanishes)."""
    u = safe_normalize(x)
    return safe_normalize(grad - jnp.vdot(grad, u) * u)


def slerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
    """Point at fraction ``t`` of the great-circle arc from ``a`` to ``b`` (both of norm r).

    Built from the orthonormal pair (â, unit of b̂ − (â·b̂)â), which is stable for tiny and
    for near-antipodal arcs (no division by sin θ).
    """
    r = jnp.sqrt(jnp.sum(jnp.square(a)))
    u = safe_normalize(a)
    bu = safe_normalize(b)
    cos = jnp.vdot(u, bu)
    perp = bu - cos * u
    theta = jnp.arctan2(jnp.sqrt(jnp.sum(jnp.square(perp))), cos)
    v = safe_normalize(perp)
    return r * (jnp.cos(t * theta) * u + jnp.sin(t * theta) * v)


def _sphere_example(model, config: SphereConfig, ex: dict) -> AttackResult:
    x0, y, radius, step_size = ex["x"], ex["y"], ex["radius"], ex["step_size"]

    def evaluate(x):
        logits = model(x)
        return ascent_objective(logits, y, loss=config.loss, targeted=config.targeted), logits

    value_and_grad = jax.value_and_grad(evaluate, has_aux=True)
    is_error = lambda x: is_adversarial(model(x), y, targeted=config.targeted)

    start = project_to_sphere(x0, radius)
    if config.random_start:
        noise = jax.random.normal(ex["key"], x0.shape, x0.dtype)
        start = project_to_sphere(start + step_size * tangent_direction(noise, start), radius)

    if config.mode == "worst_case":
        (objective, _), grad = value_and_grad(start)
    else:       # unused in nearest mode: placeholders of the right type, no extra gradient
        objective = jnp.zeros((), jax.eval_shape(evaluate, start)[0].dtype)
        grad = jnp.zeros_like(start)
    state = SphereState(x=start, objective=objective, grad=grad, step_size=step_size,
                        found=jnp.zeros((), bool), moves=jnp.zeros((), jnp.int32))

    if config.mode == "worst_case":
        def step(i, s: SphereState) -> SphereState:
            cand = project_to_sphere(s.x + s.step_size * tangent_direction(s.grad, s.x), radius)
            (obj, _), g = value_and_grad(cand)
            accept = obj > s.objective
            return s._replace(
                x=jnp.where(accept, cand, s.x), objective=jnp.where(accept, obj, s.objective),
                grad=jnp.where(accept, g, s.grad),
                step_size=jnp.where(accept, s.step_size, 0.5 * s.step_size),
                moves=s.moves + accept.astype(jnp.int32))

        state, steps = iterate(step, state, config.num_steps)
        return finish(model, x0, y, state.x, targeted=config.targeted, loss=config.loss,
                      num_steps=steps)

    def step(i, s: SphereState) -> SphereState:
        # Evaluate the current point: stop here if it is already an error, else move.
        (_, logits), g = value_and_grad(s.x)
        found = is_adversarial(logits, y, targeted=config.targeted)
        moved = project_to_sphere(s.x + s.step_size * tangent_direction(g, s.x), radius)
        return s._replace(x=jnp.where(found, s.x, moved), found=found,
                          moves=s.moves + (~found).astype(jnp.int32))

    state, _ = iterate(step, state, config.num_steps, done=lambda s: s.found)
    found = is_error(state.x)  # the last move has not been evaluated inside the loop

    # Bisect along the arc, carrying the last point found to be an error bit for bit: it is the
    # point returned, so no re-evaluation (which XLA may fuse and round differently) can disagree
    # with the decision that kept it.
    arc_point = lambda t: project_to_sphere(slerp(start, state.x, t), radius)

    def bisect(i, bracket):
        lo, hi, x_hi = bracket
        mid = 0.5 * (lo + hi)
        cand = arc_point(mid)
        err = is_error(cand)
        return jnp.where(err, lo, mid), jnp.where(err, mid, hi), jnp.where(err, cand, x_hi)

    one = jnp.ones((), x0.dtype)
    (_, _, tightened), _ = iterate(bisect, (0 * one, one, state.x), config.refine_steps)
    x_adv = jnp.where(found, tightened, state.x)
    return finish(model, x0, y, x_adv, targeted=config.targeted, loss=config.loss,
                  num_steps=state.moves)


def sphere_pgd(logit_fn, x, y=None, *, step_size, num_steps, mode="nearest", radius=None, key=None,
               refine_steps=20, targeted=False, loss="ce", params=None) -> AttackResult:
    """Gilmer et al.'s manifold attack: normalised gradient steps that stay on a sphere.

    Args:
      logit_fn: the model: an `attacks.Model` without bounds (a sphere has no box: a model
        that declares bounds is refused), a per-example ``x -> logits`` (binary scalar or
        K-vector), ``(params, x)`` with ``params=``, or a callable pytree.
      x: ``(B, *input_shape)`` starting points (nonzero).  y: ``(B,)`` labels (targets if
        ``targeted``), or ``None`` (untargeted) for the model's predictions.
      step_size: arc step α (scalar or ``(B,)``), in the units of x (e.g. 0.01 on the unit sphere).
      num_steps: maximum gradient steps.
      mode: ``"nearest"`` (first error, then arc bisection) or ``"worst_case"`` (maximise loss).
      radius: ``None`` to stay on ``‖x‖`` per example, or a scalar / ``(B,)`` radius; x is first
        projected onto it.
      key: optional; if given the start is moved by α in a uniformly random tangent direction.
      refine_steps: bisection steps along the arc in ``"nearest"`` mode (interval / 2^steps).

    Returns:
      `AttackResult`; ``distance`` = ‖x_adv − x‖₂ (L2, chordal, from the ORIGINAL x);
      ``num_steps`` = gradient steps (worst_case: all iterations including rejected ones;
      nearest: steps before the first error).  If no error is found in ``"nearest"`` mode,
      ``success`` is False and ``x_adv`` is the last iterate.

    Guarantees: | ‖x_adv‖ − r | ≤ 1e-5·r; success judged on x_adv; worst_case never returns a
    point with lower loss than the start.

    Example::

        res = attacks.sphere_pgd(f, x, y, step_size=0.01, num_steps=1000, mode="nearest")
        mean_distance = res.distance[res.success].mean()     # Gilmer's d(E) estimate
    """
    _validate.check_choice(mode, "mode", MODES)
    _validate.check_loss(loss)
    model = _model.resolve(logit_fn, params)
    _model.refuse_bounds(model, "sphere_pgd", "keeps every point on a sphere")
    num_steps = _validate.check_int(num_steps, "num_steps", minimum=0)
    refine_steps = _validate.check_int(refine_steps, "refine_steps", minimum=0)
    x, y = _validate.check_batch(x, y, label_name="target" if targeted else "y")
    b = x.shape[0]
    step_size = _validate.check_nonnegative(step_size, "step_size", b, x.dtype, positive=True)
    if _validate._concrete(x):           # on the host: no device program compiled for a check
        norms = np.sqrt(np.sum(np.square(np.asarray(x).reshape(b, -1)), axis=1))
    else:
        norms = jnp.sqrt(jnp.sum(jnp.square(x.reshape(b, -1)), axis=1))
    if _validate._concrete(norms) and bool(np.any(np.asarray(norms) == 0)):
        raise ValueError(f"x has zero norm in examples {np.flatnonzero(np.asarray(norms) == 0)[:5].tolist()}; "
                         "a point at the origin lies on no sphere.")
    if radius is None:
        radius = norms
    else:
        radius = _validate.check_nonnegative(radius, "radius", b, x.dtype, positive=True)
    keys, shared_key = _validate.check_key(key, b) if key is not None else (None, None)
    _, y = _validate.check_model_and_labels(model, x, y, targeted=targeted,
                                            label_name="target" if targeted else "y")
    batch = {"x": x, "y": y, "radius": radius, "step_size": step_size}
    if keys is not None:
        batch["key"] = keys
    config = SphereConfig(mode=mode, loss=loss, targeted=bool(targeted), num_steps=num_steps,
                          refine_steps=refine_steps, random_start=key is not None)
    extra = {"key": shared_key} if shared_key is not None else {}
    return _base.execute(_sphere_example, model.fn, config, model.params, batch, **extra)
