"""Fast gradient sign method (Goodfellow, Shlens, Szegedy 2015, §3) and its L2 variant.

    x_adv = Π_box( x + ε·sign(∇ₓJ(x, y)) )          (L∞, Goodfellow eq. in §3)
    x_adv = Π_box( x + ε·∇ₓJ / ‖∇ₓJ‖₂ )             (L2: the perturbation has norm exactly ε)

J is the adversarial objective (cross-entropy by default; targeted: ``−J(x, target)``).  This is
one PGD step from x with step size ε and no random start (the same projection and clipping as
`attacks.pgd`), written straight-line: with a list of budgets the gradient at x does not depend
on ε, so it is computed once per example for all of them.  On a linear binary model
z = wᵀx + b the logit moves by exactly ε‖w‖₁ (L∞) or ε‖w‖₂ (L2), with no box;
`theory.fgsm_linear_logit_change` gives the same closed form.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from attacks._base import AttackResult, ascent_objective, clip_to_box, finish
from attacks.pgd import ascent_direction, prepare, project_ball, run


class FGSMConfig(NamedTuple):
    norm: str
    loss: str
    targeted: bool


def _fgsm_example(model, config: FGSMConfig, ex: dict) -> AttackResult:
    x0, y, eps = ex["x"], ex["y"], ex["eps"]
    grad = jax.grad(lambda v: ascent_objective(model(v), y, loss=config.loss, targeted=config.targeted))(x0)
    x = x0 + eps * ascent_direction(grad, config.norm)
    x = clip_to_box(project_ball(x, x0, eps, config.norm), ex)
    return finish(model, x0, y, x, targeted=config.targeted, loss=config.loss, num_steps=1,
                  distance_norm=config.norm)


def fgsm(logit_fn, x, y=None, *, eps=None, epsilons=None, norm="linf", bounds=None, targeted=False,
         loss="ce", params=None) -> AttackResult:
    """One gradient step of size ``eps`` in the L∞ (sign) or L2 (normalised) geometry.

    Args:
      logit_fn: the model: an `attacks.Model`, a per-example ``x -> logits`` (scalar = binary,
        positive means class 1; vector = K classes), ``(params, x) -> logits`` with ``params=``,
        or a callable pytree (Equinox module).
      x: ``(B, *input_shape)``; y: ``(B,)`` labels (targets if ``targeted``), or ``None``
        (untargeted only) for the model's predicted labels.
      eps: scalar or per-example ``(B,)`` step size ε ≥ 0.  epsilons: instead, a sequence of E
        budgets: every result field gets a leading ε axis (see `AttackResult`).
      norm: ``"linf"`` or ``"l2"``.  bounds: ``None`` (the model's input domain, see `attacks`)
        or ``(lo, hi)``, clipped after the step.
      targeted: step to decrease the loss of target ``y`` instead of increasing that of ``y``.
      loss: ``"ce"`` (cross-entropy, Goodfellow) or ``"margin"``.

    Returns:
      `AttackResult` with ``num_steps = 1`` and ``distance`` in ``norm`` (= ε unless the box
      clipped or the gradient was zero).

    Example::

        res = attacks.fgsm(f, x, y, eps=0.25, bounds=(0.0, 1.0))
        per_eps = attacks.fgsm(f, x, y, epsilons=[0.1, 0.2, 0.3])     # success: (3, B)
    """
    prepared = prepare(logit_fn, x, y, eps=eps, epsilons=epsilons, norm=norm, params=params,
                       bounds=bounds, targeted=targeted, loss=loss, scale_step=False)
    return run(_fgsm_example, prepared, FGSMConfig(norm=norm, loss=loss, targeted=bool(targeted)))
