"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", ICML, Algorithm 1) in an L∞ or L2 ε-ball, with an optional box.

One example, one ``lax.fori_loop`` of ``num_steps`` iterations (`attacks._base.iterate`), driven
by the same `attacks._base.execute` as PGD.  Iteration k evaluates f and ∇f at x⁽ᵏ⁾ (one
forward-backward, as a PGD step) and then moves:

    z⁽ᵏ⁺¹⁾ = P_S( x⁽ᵏ⁾ + η⁽ᵏ⁾ u(∇f(x⁽ᵏ⁾)) ),          u = sign (L∞) or g/‖g‖₂ (L2)
    x⁽ᵏ⁺¹⁾ = P_S( x⁽ᵏ⁾ + α(z⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾) ),  α = 0.75 (α = 1 at k = 0)

with S the ε-ball around the original x intersected with the box (P_S: ball projection, then
clipping, which stays in the ball since x is in the box) and η⁽⁰⁾ = 2ε.  f_max and x_max track
the highest objective seen.  At the checkpoints w_j = ⌈p_j·N⌉ (N = ``num_steps``),

    p₀ = 0,  p₁ = 0.22,  p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06),

after evaluating x⁽ʷʲ⁾ (the timing of the authors' implementation), the step size is halved and
the iterate restarts from x_max (with its stored gradient) if

    Condition 1:  #{k ∈ (w_{j−1}, w_j] : f(x⁽ᵏ⁾) > f(x⁽ᵏ⁻¹⁾)} < ρ·(w_j − w_{j−1}),  ρ = 0.75, or
    Condition 2:  η⁽ʷʲ⁻¹⁾ = η⁽ʷʲ⁾ and f_max⁽ʷʲ⁻¹⁾ = f_max⁽ʷʲ⁾  (no halving and no progress since
                  the last checkpoint; f_max⁽ʷ⁰⁾ = f(x⁽⁰⁾)).

Consecutive values f(x⁽ᵏ⁾), f(x⁽ᵏ⁻¹⁾) in Condition 1 are those evaluated, also across a restart
from x_max.  The random start is uniform in the ball (as `attacks.pgd`'s), where the authors'
code starts on the ball's boundary.

The loop runs N gradient evaluations and the last iterate gets one extra forward pass, exactly as
`attacks.pgd` with the same ``num_steps``.  The returned point is the best iterate over all
iterations and restarts -- successful beats unsuccessful, then higher objective.

Losses (the objective f, maximised; targeted: ``−L(x, target)``):

* ``"ce"``: cross-entropy; for a binary (scalar-logit) model the sigmoid cross-entropy
  ``softplus(z) − y·z``, i.e. the two-class softmax cross-entropy of logits (0, z).
* ``"dlr"``: the difference-of-logits ratio (`attacks._base.dlr_loss`, Croce & Hein eq. 6),
  untargeted, K >= 3 classes; binary and 2-class models raise ``ValueError`` before tracing
  (DLR divides by z_π1 − z_π3; use ``"ce"`` or ``"margin"`` there).
* ``"margin"``: the negated margin ``max_{j≠y} z_j − z_y`` (binary: ``(1 − 2y)·z``).

Only the gradient's direction is used, so cross-entropy goes through
`attacks._base.ascent_objective` (no underflow on confident models).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attacks import _validate
from attacks._base import AttackResult, ascent_objective, clip_to_box, finish, is_adversarial, iterate
from attacks.pgd import NORMS, ascent_direction, prepare, project_ball, random_start, run

LOSSES = ("ce", "dlr", "margin")
MOMENTUM = 0.75          # α, Croce & Hein §3.1
RHO = 0.75               # ρ of Condition 1
P1, P_DECAY, P_MIN = 0.22, 0.03, 0.06


def checkpoints(num_steps: int) -> tuple:
    """The checkpoints ``(w₁, w₂, …)`` ⊂ [1, num_steps]: ``w_j = ⌈p_j·N⌉`` with p₀ = 0,
    p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (Croce & Hein 2020, §3.2);
    repeated values (small N) are kept once.

    >>> checkpoints(100)
    (22, 41, 57, 70, 80, 87, 93, 99)
    """
    out, prev, p = [], 0.0, P1
    while p <= 1.0:
        w = math.ceil(round(p * num_steps, 9))      # round: 0.22·100 is 22.000000000000004
        if 1 <= w <= num_steps and (not out or w > out[-1]):
            out.append(w)
        prev, p = p, p + max(p - prev - P_DECAY, P_MIN)
    return tuple(out)


class APGDConfig(NamedTuple):
    norm: str
    loss: str
    targeted: bool
    num_steps: int
    restarts: int
    random_start: bool


class APGDState(NamedTuple):
    x: jax.Array              # x⁽ᵏ⁾, to be evaluated
    x_prev: jax.Array         # x⁽ᵏ⁻¹⁾, for the momentum term
    f_prev: jax.Array         # f(x⁽ᵏ⁻¹⁾) (Condition 1 counts increases of consecutive values)
    eta: jax.Array            # η⁽ᵏ⁾
    x_max: jax.Array
    f_max: jax.Array
    grad_max: jax.Array       # ∇f(x_max): a restart from x_max needs no extra evaluation
    increases: jax.Array      # int32, increases since the last checkpoint
    f_max_check: jax.Array    # f_max at the last checkpoint
    halved_check: jax.Array   # bool, η was halved at the last checkpoint
    best_x: jax.Array         # the point returned: successful first, then highest objective
    best_objective: jax.Array
    best_success: jax.Array


def _schedule(num_steps: int):
    """``(is_checkpoint (N+1,) bool, window (N+1,) float)``: window[w_j] = w_j − w_{j−1}."""
    is_check = np.zeros(num_steps + 1, bool)
    window = np.ones(num_steps + 1, np.float32)
    prev = 0
    for w in checkpoints(num_steps):
        is_check[w], window[w] = True, w - prev
        prev = w
    return is_check, window


def _apgd_example(model, config: APGDConfig, ex: dict) -> AttackResult:
    x0, y, eps = ex["x"], ex["y"], ex["eps"]
    is_check, window = _schedule(config.num_steps)
    is_check, window = jnp.asarray(is_check), jnp.asarray(window)

    def evaluate(x):
        logits = model(x)
        return ascent_objective(logits, y, loss=config.loss, targeted=config.targeted), logits

    value_and_grad = jax.value_and_grad(evaluate, has_aux=True)
    project = lambda v: clip_to_box(project_ball(v, x0, eps, config.norm), ex)  # noqa: E731

    def record(s: APGDState, x, objective, logits) -> APGDState:
        success = is_adversarial(logits, y, targeted=config.targeted)
        better = (success & ~s.best_success) | ((success == s.best_success) & (objective > s.best_objective))
        return s._replace(best_x=jnp.where(better, x, s.best_x),
                          best_objective=jnp.where(better, objective, s.best_objective),
                          best_success=jnp.where(better, success, s.best_success))

    def step(k, s: APGDState) -> APGDState:
        (f, logits), grad = value_and_grad(s.x)
        s = record(s, s.x, f, logits)
        increases = s.increases + ((k > 0) & (f > s.f_prev)).astype(jnp.int32)
        improved = f > s.f_max
        x_max = jnp.where(improved, s.x, s.x_max)
        grad_max = jnp.where(improved, grad, s.grad_max)
        f_max = jnp.where(improved, f, s.f_max)
        # Checkpoint w_j = k: halve η and restart from x_max on Condition 1 or 2.
        check = is_check[k]
        oscillating = increases.astype(window.dtype) < RHO * window[k]
        stalled = ~s.halved_check & (f_max <= s.f_max_check)
        halve = check & (oscillating | stalled)
        eta = jnp.where(halve, 0.5 * s.eta, s.eta)
        x = jnp.where(halve, x_max, s.x)
        grad = jnp.where(halve, grad_max, grad)
        a = jnp.where(k == 0, 1.0, MOMENTUM).astype(x.dtype)
        z = project(x + eta * ascent_direction(grad, config.norm))
        x_next = project(x + a * (z - x) + (1 - a) * (x - s.x_prev))
        return s._replace(
            x=x_next, x_prev=x, f_prev=f, eta=eta, x_max=x_max, f_max=f_max, grad_max=grad_max,
            increases=jnp.where(check, 0, increases),
            # k = 0 is w₀: Condition 2 at w₁ compares with f_max⁽⁰⁾ = f(x⁽⁰⁾).
            f_max_check=jnp.where(check | (k == 0), f_max, s.f_max_check),
            halved_check=jnp.where(check, halve, s.halved_check))

    def restart(r, carry):
        s, steps = carry
        start = x0
        if config.random_start:
            start = clip_to_box(random_start(jax.random.fold_in(ex["key"], r), x0, eps, config.norm), ex)
        minus_inf = jnp.full_like(s.f_max, -jnp.inf)
        s = s._replace(x=start, x_prev=start, f_prev=minus_inf, eta=2.0 * eps.astype(x0.dtype),
                       x_max=start, f_max=minus_inf, grad_max=jnp.zeros_like(x0),
                       increases=jnp.zeros((), jnp.int32), f_max_check=minus_inf,
                       halved_check=jnp.zeros((), bool))
        s, run_steps = iterate(step, s, config.num_steps)
        objective, logits = evaluate(s.x)     # the last iterate: a forward pass, no gradient
        return record(s, s.x, objective, logits), steps + run_steps

    dtype = jax.eval_shape(evaluate, x0)[0].dtype        # the model may compute in another dtype
    minus_inf = jnp.asarray(-jnp.inf, dtype)
    state = APGDState(x=x0, x_prev=x0, f_prev=minus_inf, eta=jnp.zeros((), x0.dtype), x_max=x0,
                      f_max=minus_inf, grad_max=jnp.zeros_like(x0), increases=jnp.zeros((), jnp.int32),
                      f_max_check=minus_inf, halved_check=jnp.zeros((), bool), best_x=x0,
                      best_objective=minus_inf, best_success=jnp.zeros((), bool))
    state, steps = jax.lax.fori_loop(0, config.restarts, restart, (state, jnp.zeros((), jnp.int32)))
    return finish(model, x0, y, state.best_x, targeted=config.targeted, loss=config.loss,
                  num_steps=steps, distance_norm=config.norm)


def apgd(logit_fn, x, y=None, *, eps=None, epsilons=None, norm="linf", num_steps=100, loss="ce",
         bounds=None, random_start=True, restarts=1, key=None, targeted=False,
         params=None) -> AttackResult:
    """Auto-PGD (Croce & Hein 2020, Algorithm 1): PGD with momentum and an adaptive step size.

    Args:
      logit_fn: the model: an `attacks.Model`, a per-example ``x -> logits`` (scalar: binary,
        positive = class 1; ``(K,)``: K classes), ``(params, x) -> logits`` with ``params=``, or
        a callable pytree (Equinox module).
      x: ``(B, *input_shape)``.  y: ``(B,)`` true labels (targets if ``targeted``), or ``None``
        (untargeted only) for the model's predicted labels.
      eps: ball radius, scalar or per-example ``(B,)``.  epsilons: instead, a sequence of E radii:
        one call, every result field gets a leading ε axis (see `AttackResult`).
      norm: ``"linf"`` or ``"l2"``.  num_steps: N, gradient evaluations per restart (100 in the
        paper); the checkpoints scale with it (`checkpoints`).
      loss: ``"ce"``, ``"dlr"`` (K >= 3, untargeted) or ``"margin"``.
      bounds: ``None`` (the model's input domain, see `attacks`) or ``(lo, hi)``.
      random_start: start uniformly in the ball (needs ``key``), else at x.  restarts: runs from
        independent random starts; the best point over all is returned.
      key: one PRNG key (acts as ``split(key, B)``) or ``(B,)`` per-example keys.
      targeted: maximise ``−L(x, y)`` toward target ``y``.
      params: optional pytree passed as ``logit_fn(params, x)``; changing it does not recompile.

    Returns:
      `AttackResult`; ``distance`` in ``norm``; ``num_steps`` = N·restarts.

    Guarantees: ``‖x_adv − x‖ ≤ ε`` (up to rounding), ``x_adv`` in the box, success judged on
    ``x_adv``, same key -> same result, example i independent of the rest of the batch.

    Example::

        res = attacks.apgd(model, x, y, eps=8 / 255, loss="dlr", key=jax.random.key(0))
    """
    num_steps = _validate.check_int(num_steps, "num_steps", minimum=1)
    restarts = _validate.check_int(restarts, "restarts", minimum=1)
    _validate.check_choice(norm, "norm", NORMS)
    _validate.check_loss(loss, LOSSES)
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (otherwise every restart is identical).")
    if loss == "dlr" and targeted:
        raise ValueError("loss='dlr' is untargeted here (the targeted DLR of Croce & Hein needs the true "
                         "label as well as the target); use loss='ce' or 'margin' for a targeted attack.")
    prepared = prepare(logit_fn, x, y, eps=eps, epsilons=epsilons, norm=norm, params=params,
                       bounds=bounds, targeted=targeted, loss=loss, key=key, need_key=random_start,
                       scale_step=False, losses=LOSSES)
    config = APGDConfig(norm=norm, loss=loss, targeted=bool(targeted), num_steps=num_steps,
                        restarts=restarts, random_start=bool(random_start))
    return run(_apgd_example, prepared, config)
