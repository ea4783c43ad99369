"""Smallest ε at which a fixed-ε attack succeeds, by per-example bisection.

For each example i keep an interval [loᵢ, hiᵢ] with "attack fails at loᵢ" and "succeeds at hiᵢ",
and halve it ``num_bisections`` times: εᵢ = (loᵢ + hiᵢ)/2, run the attack on the whole batch with
the vector ε (one jitted call per round, no recompilation since ε is traced), move hiᵢ down on
success and loᵢ up on failure.  Each example has its own interval, so one hard example does not
slow the others' convergence, and the final width is (hi − lo)·2^−num_bisections.  It assumes
success is monotone in ε, which holds exactly for FGSM on linear models (minimal ε =
|wᵀx + b|/‖w‖_* with ‖·‖_* = ‖·‖₁ for L∞ and ‖·‖₂ for L2) and approximately for PGD.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attacks import _validate
from attacks._base import AttackResult
from attacks.transfer import predict


class MinimalEpsilon(NamedTuple):
    """``eps (B,)``: smallest successful ε found (``inf`` where the attack fails even at ``hi``);
    ``result``: the `AttackResult` of the attack at that ε (at ``hi`` for the failures)."""

    eps: jax.Array
    result: AttackResult


def minimal_epsilon(attack_fn: Callable, logit_fn, x, y=None, *, lo=0.0, hi, num_bisections=20,
                    **kwargs) -> MinimalEpsilon:
    """Per-example bisection over ε for any attack taking ``eps`` (scalar or ``(B,)``).

    Args:
      attack_fn: e.g. `attacks.fgsm` or `attacks.pgd`, called as
        ``attack_fn(logit_fn, x, y, eps=eps_vector, **kwargs)``.
      logit_fn, x, y: as for the attack (``y=None``: the model's predictions, computed once).
      lo, hi: scalars or ``(B,)``: the search interval; the attack is run once at ``hi`` to
        find the examples it can break at all.
      num_bisections: halvings of each interval (precision (hi − lo)·2^−num_bisections).
      **kwargs: passed to the attack each round (``norm``, ``num_steps``, ``key``, ``params`` …;
        a fixed ``key`` keeps the rounds comparable).

    Returns:
      `MinimalEpsilon(eps, result)`.  ``eps`` is an upper end of the final interval, so the attack
      succeeds at it (``result.success``) and, if success is monotone, fails below
      ``eps − width``.

    Example::

        found = attacks.minimal_epsilon(attacks.fgsm, f, x, y, hi=1.0, norm="linf")
        found.eps            # (B,) minimal L∞ budget per example
    """
    if "eps" in kwargs:
        raise ValueError("minimal_epsilon chooses eps itself; do not pass eps=.")
    num_bisections = _validate.check_int(num_bisections, "num_bisections", minimum=0)
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (B, *input_shape), got {x.shape}.")
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    b = x.shape[0]
    lo = _validate.check_nonnegative(lo, "lo", b, dtype)
    hi = _validate.check_nonnegative(hi, "hi", b, dtype)
    if _validate._concrete(lo, hi) and bool(np.any(np.asarray(lo) > np.asarray(hi))):
        raise ValueError("minimal_epsilon needs lo <= hi for every example.")
    if y is None:
        y = predict(logit_fn, x, params=kwargs.get("params"))

    best = attack_fn(logit_fn, x, y, eps=hi, **kwargs)
    reachable = best.success
    for _ in range(num_bisections):
        mid = 0.5 * (lo + hi)
        res = attack_fn(logit_fn, x, y, eps=mid, **kwargs)
        ok = res.success & reachable
        hi = jnp.where(ok, mid, hi)
        lo = jnp.where(ok | ~reachable, lo, mid)
        best = jax.tree_util.tree_map(
            lambda new, old: jnp.where(ok.reshape(ok.shape + (1,) * (new.ndim - 1)), new, old), res, best)
    eps = jnp.where(reachable, hi, jnp.inf)
    return MinimalEpsilon(eps=eps, result=best)
