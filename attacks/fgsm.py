"""Fast gradient sign method (Goodfellow, Shlens, Szegedy 2015, §3) and its L2 variant.

    x_adv = Π_box( x + ε·sign(∇ₓJ(x, y)) )          (L∞, Goodfellow eq. in §3)
    x_adv = Π_box( x + ε·∇ₓJ / ‖∇ₓJ‖₂ )             (L2: the perturbation has norm exactly ε)

J is the adversarial objective (cross-entropy by default; targeted: ``−J(x, target)``).  This is
one PGD step from x with step size ε and no random start, so it runs on the same code path as
`attacks.pgd` (the one driver); unlike PGD it returns the stepped point, not the best iterate.
On a linear binary model z = wᵀx + b the logit moves by exactly ε‖w‖₁ (L∞) or ε‖w‖₂ (L2), with
no box; `theory.fgsm_linear_logit_change` gives the same closed form.
"""

from __future__ import annotations

from attacks import _base
from attacks._base import AttackResult
from attacks.pgd import PGDConfig, _pgd_example, prepare


def fgsm(logit_fn, x, y, *, eps, norm="linf", bounds=None, targeted=False, loss="ce",
         params=None) -> AttackResult:
    """One gradient step of size ``eps`` in the L∞ (sign) or L2 (normalised) geometry.

    Args:
      logit_fn: per-example ``x -> logits`` (scalar = binary, positive means class 1; vector = K
        classes), or ``(params, x) -> logits`` with ``params=``.
      x: ``(B, *input_shape)``; y: ``(B,)`` labels (targets if ``targeted``).
      eps: scalar or per-example ``(B,)`` step size ε ≥ 0.
      norm: ``"linf"`` or ``"l2"``.  bounds: ``None`` or ``(lo, hi)`` box, clipped after the step.
      targeted: step to decrease the loss of target ``y`` instead of increasing that of ``y``.
      loss: ``"ce"`` (cross-entropy, Goodfellow) or ``"margin"``.

    Returns:
      `AttackResult` with ``num_steps = 1`` and ``distance`` in ``norm`` (= ε unless the box
      clipped or the gradient was zero).

    Example::

        res = attacks.fgsm(f, x, y, eps=0.25, bounds=(0.0, 1.0))
    """
    x, y, eps, batch = prepare(logit_fn, x, y, eps=eps, norm=norm, params=params, bounds=bounds,
                               targeted=targeted, loss=loss, step_size=eps)
    config = PGDConfig(norm=norm, loss=loss, targeted=bool(targeted), num_steps=1, restarts=1,
                       random_start=False, early_stop=False, keep_best=False)
    return _base.execute(_pgd_example, logit_fn, config, params, batch)
