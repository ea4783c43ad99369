"""Smallest L2 perturbation that changes the class, with no manifold constraint.

Gilmer et al. (2018, §5) report an off-manifold error at L2 distance 0.0796 from an inner-sphere
point, with ‖x̂‖ ≈ 1.07: that is this attack (`AttackResult.x_adv_norm` gives ‖x̂‖).  Untargeted.

For one example x with label y, write the class constraints f_k(v) = z_y(v) − z_k(v), k ≠ y
(binary: f(v) = (2y − 1)·z(v)); v is an error iff some f_k(v) < 0.  Two phases:

1. **Find an error** (DeepFool, Moosavi-Dezfooli et al. 2016): linearise at the current point p
   and step to the nearest linearised boundary, k* = argmin_k |f_k(p)| / ‖∇f_k(p)‖,
   r ← r − f_k*(p)·∇f_k*(p)/‖∇f_k*(p)‖², p = x + (1 + overshoot)·r, projected onto the
   ``max_radius`` ball; a ``while_loop`` that stops each example at its first error.
2. **Tighten** (monotone, every accepted point is an error): bisect along the ray x → p, then
   repeat ``refine_steps`` times: at the current error p (ρ = ‖p − x‖) rotate the direction
   u = (p − x)/ρ toward the boundary normal −∇m(p)/‖∇m(p)‖ (m = the label's margin) by the
   largest β ∈ {1, ½, ¼, …} for which x + ρ·normalise((1 − β)u + β n) is still an error (a
   fixed, masked set of trials), then bisect along that ray.  ρ never increases; at a fixed point
   the direction is the boundary normal, the first-order condition for the closest point.

On a linear model phase 1 lands on the minimiser's ray in one step and the bisection makes the
distance exact to ρ·2^−``bisect_steps``: |wᵀx + b|/‖w‖₂ (binary) or min_k f_k/‖w_y − w_k‖.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attacks import _base, _model, _validate
from attacks._base import (AttackResult, finish, is_adversarial, iterate, margin,
                           safe_normalize)
from attacks.pgd import project_ball


class NearestConfig(NamedTuple):
    loss: str
    num_steps: int
    refine_steps: int
    bisect_steps: int
    num_rotations: int


class DeepFoolState(NamedTuple):
    r: jax.Array        # accumulated linearised step (flat)
    p: jax.Array        # current point x + (1 + overshoot) r, in the ball (flat)
    found: jax.Array
    moves: jax.Array


def _nearest_example(model, config: NearestConfig, ex: dict) -> AttackResult:
    x0, y, max_radius, overshoot = ex["x"], ex["y"], ex["max_radius"], ex["overshoot"]
    shape = x0.shape
    flat_model = lambda v: model(v.reshape(shape))
    x = x0.reshape(-1)
    is_error = lambda v: is_adversarial(flat_model(v), y)

    def constraints(v):
        """``f (M,)`` (and, as aux, ``(f, logits)``): M = 1 binary, K multi-class (f_y ≡ 0 masked)."""
        z = flat_model(v)
        f = margin(z, y)[None] if z.ndim == 0 else jnp.take(z, y) - z
        return f, (f, z)

    def deepfool_step(i, s: DeepFoolState) -> DeepFoolState:
        jac, (f, z) = jax.jacrev(constraints, has_aux=True)(s.p)     # jac: (M, n)
        found = is_adversarial(z, y)
        sq = jnp.sum(jnp.square(jac), axis=1)
        dist = jnp.abs(f) / jnp.sqrt(jnp.where(sq > 0, sq, 1.0))
        dist = jnp.where(sq > 0, dist, jnp.inf)
        if z.ndim > 0:
            dist = jnp.where(jnp.arange(z.shape[0]) == y, jnp.inf, dist)
        k = jnp.argmin(dist)
        delta = -f[k] * jac[k] / jnp.where(sq[k] > 0, sq[k], 1.0)
        r = jnp.where(found, s.r, s.r + delta)
        p = project_ball(x + (1.0 + overshoot) * r, x, max_radius, "l2")
        return DeepFoolState(r=r, p=jnp.where(found, s.p, p), found=found,
                             moves=s.moves + (~found).astype(jnp.int32))

    state = DeepFoolState(r=jnp.zeros_like(x), p=x, found=jnp.zeros((), bool),
                          moves=jnp.zeros((), jnp.int32))
    state, _ = iterate(deepfool_step, state, config.num_steps, done=lambda s: s.found)
    p = state.p
    found = is_error(p)

    def ray_bisect(direction, length):
        """Bisect t ∈ [0, 1] (x correct, x + length·direction an error): a crossing point, error side."""
        def body(i, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            err = is_error(x + mid * length * direction)
            return jnp.where(err, lo, mid), jnp.where(err, mid, hi)
        one = jnp.ones((), x.dtype)
        (_, hi), _ = iterate(body, (0 * one, one), config.bisect_steps)
        return x + hi * length * direction

    rho = jnp.sqrt(jnp.sum(jnp.square(p - x)))
    cand = ray_bisect(safe_normalize(p - x), rho)
    p = jnp.where(found & is_error(cand), cand, p)

    betas = 0.5 ** jnp.arange(config.num_rotations, dtype=x.dtype)

    def refine(i, p):
        rho = jnp.sqrt(jnp.sum(jnp.square(p - x)))
        u = safe_normalize(p - x)
        normal = -safe_normalize(jax.grad(lambda v: margin(flat_model(v), y))(p))
        dirs = jax.vmap(lambda b: safe_normalize((1 - b) * u + b * normal))(betas)
        errs = jax.vmap(lambda d: is_error(x + rho * d))(dirs)
        first = jnp.argmax(errs)                      # largest β that is still an error
        new = ray_bisect(dirs[first], rho)
        ok = errs[first] & is_error(new) & (rho > 0)
        closer = jnp.sum(jnp.square(new - x)) <= jnp.sum(jnp.square(p - x))
        return jnp.where(ok & closer, new, p)

    refined, _ = iterate(refine, p, config.refine_steps)
    p = jnp.where(found, refined, p)
    return finish(model, x0, y, p.reshape(shape), targeted=False, loss=config.loss,
                  num_steps=state.moves + jnp.where(found, config.refine_steps, 0))


def nearest_error_l2(logit_fn, x, y=None, *, max_radius, num_steps=50, refine_steps=30,
                     overshoot=0.02, bisect_steps=30, num_rotations=8, loss="ce",
                     params=None) -> AttackResult:
    """Nearest misclassified point in L2 (untargeted, unconstrained: no sphere, no box).

    Args:
      logit_fn: the model: an `attacks.Model` without bounds (the search is unconstrained: a
        model that declares bounds is refused), a per-example ``x -> logits`` (binary scalar or
        K-vector), ``(params, x)`` with ``params=``, or a callable pytree.
      x: ``(B, *input_shape)``; y: ``(B,)`` true labels, or ``None`` for the model's predictions.
      max_radius: search radius (scalar or ``(B,)``): no point farther than this is returned.
      num_steps: DeepFool iterations to find a first error.  overshoot: DeepFool's 1 + η factor
        (scalar or ``(B,)``) so the linearised step lands past the boundary.
      refine_steps: rotate-and-shrink iterations.  bisect_steps: bisection steps per ray (the
        distance is exact to ρ·2^−bisect_steps along the final ray).  num_rotations: masked
        trial angles per refinement step.
      loss: objective reported in ``AttackResult.loss``.

    Returns:
      `AttackResult`; ``distance`` = ‖x_adv − x‖₂, ``x_adv_norm`` = ‖x_adv‖₂ (Gilmer's ‖x̂‖).
      ``num_steps`` = DeepFool steps + refinement steps.  If x is already misclassified,
      x_adv = x and distance 0.  On failure (no error within ``max_radius``) x_adv is the last
      DeepFool iterate and ``success`` is False.

    Guarantees: ‖x_adv − x‖₂ ≤ max_radius; every refinement keeps an error and never increases
    the distance; success judged on x_adv.

    Example::

        res = attacks.nearest_error_l2(f, x, y, max_radius=1.0)
        res.distance, res.x_adv_norm
    """
    _validate.check_loss(loss)
    model = _model.resolve(logit_fn, params)
    _model.refuse_bounds(model, "nearest_error_l2", "searches without a box")
    num_steps = _validate.check_int(num_steps, "num_steps", minimum=0)
    refine_steps = _validate.check_int(refine_steps, "refine_steps", minimum=0)
    bisect_steps = _validate.check_int(bisect_steps, "bisect_steps", minimum=1)
    num_rotations = _validate.check_int(num_rotations, "num_rotations", minimum=1)
    x, y = _validate.check_batch(x, y)
    b = x.shape[0]
    max_radius = _validate.check_nonnegative(max_radius, "max_radius", b, x.dtype, positive=True)
    overshoot = _validate.check_nonnegative(overshoot, "overshoot", b, x.dtype)
    _, y = _validate.check_model_and_labels(model, x, y)
    batch = {"x": x, "y": y, "max_radius": max_radius, "overshoot": overshoot}
    config = NearestConfig(loss=loss, num_steps=num_steps, refine_steps=refine_steps,
                           bisect_steps=bisect_steps, num_rotations=num_rotations)
    return _base.execute(_nearest_example, model.fn, config, model.params, batch)
