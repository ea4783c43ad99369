"""Closed forms for linear models (Goodfellow, Shlens & Szegedy 2015, §3 and §5).

* The linear explanation (§3): ``wᵀ(x + η) = wᵀx + wᵀη``; over ``‖η‖∞ <= ε`` the change is largest at
  ``η = ε sign(w)`` and equals ``ε‖w‖₁``; over ``‖η‖₂ <= ε`` it is ``ε‖w‖₂`` at ``η = ε w/‖w‖₂``.
* Minimal L2 adversarial distance of an affine classifier: ``|wᵀx + b| / ‖w‖₂``; for a linear softmax
  model ``z = W x + b`` the distance from ``x`` to the boundary of class ``y``'s (convex) region is
  ``min_{j≠y} (z_y − z_j) / ‖W_y − W_j‖₂``.
* Adversarial logistic regression (§5): with ``y ∈ {−1, +1}``, ``P(y = 1) = σ(wᵀx + b)`` and
  ``ζ(z) = log(1 + eᶻ)``, the loss on the worst L∞ perturbation is
  ``max_{‖η‖∞<=ε} ζ(−y(wᵀ(x + η) + b)) = ζ(ε‖w‖₁ − y(wᵀx + b))`` (the printed
  ``ζ(y(ε‖w‖₁ − wᵀx − b))`` is right only for ``y = +1``; see docs/papers.md).

All functions are jittable, differentiable ``jax.numpy`` and broadcast over leading batch axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._common import is_concrete


def _check_norm(norm: str) -> str:
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    return norm


def _check_eps(eps) -> None:
    """A perturbation budget is finite and >= 0 (checked when concrete; traced values pass)."""
    if is_concrete(eps):
        e = np.asarray(eps, dtype=float)
        if not np.all(np.isfinite(e)) or np.any(e < 0):
            raise ValueError(f"eps must be finite and >= 0 (a radius), got {eps!r}")


def fgsm_linear_logit_change(w, eps, norm: str = "linf") -> jax.Array:
    """Largest change of a linear logit ``wᵀx`` under a perturbation of size ``eps`` (Goodfellow §3).

    ``eps · ‖w‖₁`` for ``norm="linf"`` (attained by FGSM's ``η = eps · sign(w)``), ``eps · ‖w‖₂`` for
    ``norm="l2"`` (attained by ``η = eps · w/‖w‖₂``). Shapes: ``w (..., m)``, ``eps`` broadcastable to
    ``(...)``; returns ``(...)``.

    Example:
      >>> theory.fgsm_linear_logit_change(jnp.array([1.0, -2.0, 0.5]), 0.1)   # 0.1 · 3.5 = 0.35
    """
    _check_norm(norm)
    _check_eps(eps)
    w = jnp.asarray(w)
    mag = jnp.sum(jnp.abs(w), axis=-1) if norm == "linf" else jnp.linalg.norm(w, axis=-1)
    return jnp.asarray(eps) * mag


def fgsm_linear_perturbation(w, eps, norm: str = "linf") -> jax.Array:
    """The maximising perturbation of ``wᵀη`` over the ``norm``-ball of radius ``eps``.

    ``eps · sign(w)`` (L∞) or ``eps · w/‖w‖₂`` (L2; zero for ``w = 0``). Shapes: ``w (..., m) -> (..., m)``.
    """
    _check_norm(norm)
    _check_eps(eps)
    w = jnp.asarray(w)
    eps = jnp.asarray(eps)[..., None]
    if norm == "linf":
        return eps * jnp.sign(w)
    nrm = jnp.linalg.norm(w, axis=-1, keepdims=True)
    return eps * w / jnp.where(nrm > 0, nrm, 1.0)


def min_l2_distance_linear(w, b, x) -> jax.Array:
    """L2 distance from ``x`` to the hyperplane ``wᵀx + b = 0``: ``|wᵀx + b| / ‖w‖₂``.

    The smallest L2 perturbation that flips the sign of an affine logit (``inf`` when ``w = 0`` and
    ``b ≠ 0``). Shapes: ``w (m,)``, ``b ()``, ``x (..., m) -> (...)``.
    """
    w, x = jnp.asarray(w), jnp.asarray(x)
    logit = x @ w + b
    nrm = jnp.linalg.norm(w)
    return jnp.where(nrm > 0, jnp.abs(logit) / jnp.where(nrm > 0, nrm, 1.0),
                     jnp.where(logit == 0, 0.0, jnp.inf))


def min_l2_perturbation_linear(w, b, x) -> jax.Array:
    """The minimal L2 perturbation onto the hyperplane: ``r = −(wᵀx + b) w / ‖w‖₂²`` (``x + r`` is on it).

    Shapes: ``w (m,)``, ``b ()``, ``x (..., m) -> (..., m)``.
    """
    w, x = jnp.asarray(w), jnp.asarray(x)
    logit = x @ w + b
    return -(logit / jnp.sum(w * w))[..., None] * w


def min_l2_distance_multiclass(W, b, x, y=None) -> jax.Array:
    """L2 distance from ``x`` to the nearest other class of a linear softmax model ``z = W x + b``.

    ``min_{j≠y} (z_y − z_j) / ‖W_y − W_j‖₂`` (Goodfellow §3; the polyhedral region of class ``y`` is
    convex, so the nearest facet hyperplane is the nearest point of any other class). ``y`` defaults
    to the predicted class, and the result is then ``>= 0``; for a given ``y`` that ``x`` is already
    misclassified as something else, the result is ``<= 0`` (minus the distance needed to come back
    to the facet). Facets with ``W_y = W_j`` count as ``+inf`` (or ``−inf`` if ``z_y < z_j``).

    Shapes: ``W (K, m)``, ``b (K,)``, ``x (..., m)``, ``y (...)`` int ``-> (...)``.
    """
    W, b, x = jnp.asarray(W), jnp.asarray(b), jnp.asarray(x)
    if W.ndim != 2:
        raise ValueError(f"W must have shape (K, m), got {W.shape}")
    z = x @ W.T + b                                    # (..., K)
    if y is None:
        y = jnp.argmax(z, axis=-1)
    y = jnp.asarray(y)
    if is_concrete(y) and (not jnp.issubdtype(y.dtype, jnp.integer) or bool(jnp.any((y < 0) | (y >= W.shape[0])))):
        raise ValueError(f"y must hold integer class labels in [0, {W.shape[0]}), got {y!r}")
    zy = jnp.take_along_axis(z, y[..., None], axis=-1)  # (..., 1)
    gap = zy - z                                        # (..., K)
    diff = W[y][..., None, :] - W                       # (..., K, m)
    nrm = jnp.linalg.norm(diff, axis=-1)
    dist = jnp.where(nrm > 0, gap / jnp.where(nrm > 0, nrm, 1.0), jnp.where(gap >= 0, jnp.inf, -jnp.inf))
    K = W.shape[0]
    dist = jnp.where(jnp.arange(K) == y[..., None], jnp.inf, dist)
    return jnp.min(dist, axis=-1)


def _check_labels(y) -> None:
    if is_concrete(y):
        import numpy as np
        if not np.all(np.isin(np.asarray(y), (-1, 1))):
            raise ValueError(f"labels must be -1 or +1, got {y!r}")


def logistic_loss(w, b, x, y) -> jax.Array:
    """Logistic-regression loss ``ζ(−y(wᵀx + b))`` with ``ζ(z) = log(1 + eᶻ)`` and ``y ∈ {−1, +1}``.

    Shapes: ``w (m,)``, ``b ()``, ``x (..., m)``, ``y (...) -> (...)``.
    """
    _check_labels(y)
    return jax.nn.softplus(-jnp.asarray(y) * (jnp.asarray(x) @ jnp.asarray(w) + b))


def adversarial_logistic_loss(w, b, x, y, eps) -> jax.Array:
    """Closed-form adversarial logistic loss ``ζ(ε‖w‖₁ − y(wᵀx + b))`` (Goodfellow §5).

    Equals ``max_{‖η‖∞ <= ε} ζ(−y(wᵀ(x + η) + b))``: ``ζ`` is increasing and ``−y wᵀη`` is maximised at
    the corner ``η = −y ε sign(w)`` with value ``ε‖w‖₁``. Like L1 weight decay, but inside ``ζ``, so it
    stops mattering once the margin ``y(wᵀx + b)`` is large compared with ``ε‖w‖₁``.

    Shapes: ``w (m,)``, ``b ()``, ``x (..., m)``, ``y (...)`` in ``{−1, +1}``, ``eps ()`` ``-> (...)``.
    """
    _check_labels(y)
    _check_eps(eps)
    w = jnp.asarray(w)
    u = eps * jnp.sum(jnp.abs(w)) - jnp.asarray(y) * (jnp.asarray(x) @ w + b)
    return jax.nn.softplus(u)


def adversarial_logistic_loss_grad(w, b, x, y, eps) -> tuple[jax.Array, jax.Array]:
    """Per-example gradient of ``adversarial_logistic_loss`` with respect to ``(w, b)``.

    With ``u = ε‖w‖₁ − y(wᵀx + b)``: ``∂/∂w = σ(u)(ε sign(w) − y x)``, ``∂/∂b = −σ(u) y`` (``sign(0) = 0``,
    the subgradient ``jax.grad`` also uses). Shapes: ``x (..., m)``, ``y (...)``; returns
    ``(dw (..., m), db (...))``; average over the batch axis for the gradient of the mean loss.
    """
    _check_labels(y)
    _check_eps(eps)
    w, x, y = jnp.asarray(w), jnp.asarray(x), jnp.asarray(y)
    u = eps * jnp.sum(jnp.abs(w)) - y * (x @ w + b)
    s = jax.nn.sigmoid(u)
    dw = s[..., None] * (eps * jnp.sign(w) - y[..., None] * x)
    db = -s * y
    return dw, db
