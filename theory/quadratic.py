"""The quadratic network's decision boundary in closed form (Gilmer et al. 2018, §4).

The network is ``ŷ(x) = w · Σⱼ (W x)ⱼ² + b`` with ``W (h, d)`` and scalars ``w, b``
(``spheres.sphere.models.QuadraticNet``). Write ``WᵀW = V diag(s²) Vᵀ`` and ``z = Vᵀx``. For ``b < 0``

    ŷ(x) / (−b) = Σᵢ αᵢ zᵢ² − 1,        αᵢ = w sᵢ² / (−b),

so the boundary ``ŷ = 0`` is the ellipsoid ``Σ αᵢ zᵢ² = 1`` (Gilmer §4, "the quadratic network").
Class 1 (outer sphere, radius ``R``) is predicted where ``ŷ > 0``.

* Inner-sphere errors (``‖x‖ = 1`` but ``ŷ > 0``) exist iff some ``αᵢ > 1``.
* Outer-sphere errors (``‖x‖ = R`` but ``ŷ < 0``) exist iff some ``αᵢ < 1/R²``.
* The network is *perfect* iff every ``αᵢ ∈ [1/R², 1]``.

All functions here are jittable ``jax.numpy`` code. Precision matters near the range ends
(an ``αᵢ`` at ``1 ± 1e-8`` decides perfection), so use float64 (``jax_enable_x64``); the functions
that extract ``α`` warn when called in float32.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._common import check_alpha, check_radius, is_concrete, warn_if_float32


def _check_b(b) -> None:
    if is_concrete(b):
        b_arr = np.asarray(b)
        if np.any(~np.isfinite(b_arr)) or np.any(b_arr >= 0):
            raise ValueError(
                f"alphas need b < 0 (the boundary is Σ αᵢ zᵢ² = 1 with αᵢ = w sᵢ²/(−b)); got b = {b!r}. "
                "With b >= 0 the normalisation by −b is meaningless: for w > 0 the logit is >= 0 "
                "everywhere (no boundary), for w < 0 the roles of the classes are swapped.")


def _alpha_and_vectors(W, w, b, *, full: bool):
    W = jnp.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"W must have shape (h, d), got {W.shape}")
    h, d = W.shape
    if full:
        _, s, vh = jnp.linalg.svd(W, full_matrices=True)
    else:
        s = jnp.linalg.svd(W, compute_uv=False)
        vh = None
    scale = jnp.asarray(w, W.dtype) / (-jnp.asarray(b, W.dtype))
    alpha = scale * s**2
    if h < d:  # the d − h directions in the null space of W have αᵢ = 0
        alpha = jnp.concatenate([alpha, jnp.zeros((d - h,), alpha.dtype)])
    if not is_concrete(b):  # under jit: an invalid b gives NaN instead of an exception
        alpha = jnp.where(jnp.asarray(b) < 0, alpha, jnp.nan)
    order = jnp.argsort(alpha)
    alpha = alpha[order]
    return alpha, (None if vh is None else vh[order])


def alphas(W, w, b) -> jax.Array:
    """The ``d`` ellipsoid coefficients ``αᵢ`` of a quadratic network, sorted ascending (Gilmer §4).

    ``αᵢ`` are the eigenvalues of ``(w / −b) · WᵀW``, computed from the singular values of ``W``
    (``αᵢ = w sᵢ² / (−b)``, more accurate than an eigen-decomposition of ``WᵀW``). With ``h < d``
    the ``d − h`` zero eigenvalues are included.

    Args:
      W: ``(h, d)`` first-layer weights (no bias). w, b: scalars; ``b < 0`` is required.

    Returns:
      ``alpha (d,)`` sorted ascending.

    Raises:
      ValueError: ``b >= 0`` (outside jit; under jit the result is NaN instead).

    Example:
      >>> import jax.numpy as jnp
      >>> theory.alphas(jnp.diag(jnp.array([1.0, 2.0])), 0.5, -1.0)   # α = 0.5·s² = [0.5, 2.0]
    """
    warn_if_float32("alphas", "alphas near 1 or 1/R² decide whether a model is perfect")
    _check_b(b)
    alpha = _alpha_and_vectors(W, w, b, full=False)[0]
    if is_concrete(alpha, W, w) and not bool(jnp.all(jnp.isfinite(alpha))):
        raise ValueError("alphas: W, w or b is not finite (NaN or inf), so α is undefined; the "
                         "model has diverged")
    return alpha


def _params_of(variables):
    params = variables.get("params", variables) if hasattr(variables, "get") else variables
    try:
        return params["W"], params["w"], params["b"]
    except (KeyError, TypeError) as e:
        raise ValueError("expected QuadraticNet variables {'params': {'W': (h, d), 'w': (), 'b': ()}} "
                         f"(or the inner params dict); got keys {list(params)}") from e


def alphas_from_variables(variables) -> jax.Array:
    """``alphas`` of a ``spheres.sphere.models.QuadraticNet`` from its Flax variables.

    Accepts ``{"params": {"W", "w", "b"}}`` or the inner params dict. Returns ``alpha (d,)`` sorted.
    """
    return alphas(*_params_of(variables))


def is_perfect(alpha, R=1.3) -> jax.Array:
    """True iff every ``αᵢ ∈ [1/R², 1]``: the quadratic net then makes no error on either sphere.

    (Gilmer §4: inner errors need some ``αᵢ > 1``, outer errors some ``αᵢ < 1/R²``.)
    Shapes: ``alpha (..., d) -> (...)`` bool. The interval is closed: ``αᵢ = 1`` puts a measure-zero
    set of the inner sphere on the boundary, which is not an error of positive probability.
    """
    check_radius(R)
    alpha = jnp.asarray(check_alpha(alpha))
    return jnp.all((alpha >= 1.0 / R**2) & (alpha <= 1.0), axis=-1)


def fraction_in_range(alpha, R=1.3) -> jax.Array:
    """Fraction of the ``αᵢ`` inside ``[1/R², 1]`` (the paper's "% of α in range"). ``(..., d) -> (...)``."""
    check_radius(R)
    alpha = jnp.asarray(check_alpha(alpha))
    inside = (alpha >= 1.0 / R**2) & (alpha <= 1.0)
    return jnp.mean(inside.astype(alpha.dtype), axis=-1)


def ellipsoid_semi_axes(alpha) -> jax.Array:
    """Semi-axes ``1/√αᵢ`` of the boundary ellipsoid ``Σ αᵢ zᵢ² = 1`` (along the eigenvectors of WᵀW).

    An ``αᵢ <= 0`` means the boundary never closes in that direction: the semi-axis is ``inf``.
    The inner sphere (radius 1) is inside the ellipsoid iff every semi-axis is ``>= 1``; the outer
    sphere (radius ``R``) is outside iff every semi-axis is ``<= R``. Shapes: ``(..., d) -> (..., d)``.
    """
    alpha = jnp.asarray(check_alpha(alpha))
    return jnp.where(alpha > 0, 1.0 / jnp.sqrt(jnp.where(alpha > 0, alpha, 1.0)), jnp.inf)


class WorstCasePoints(NamedTuple):
    """Closed-form worst-case points of a quadratic net on each sphere.

    ``inner_x (d,)``: the unit vector along the eigenvector of the largest ``α``; it maximises the logit
    on the inner sphere (misclassified iff ``alpha_max > 1``). ``outer_x (d,)``: ``R`` times the
    eigenvector of the smallest ``α``; it minimises the logit on the outer sphere (misclassified iff
    ``alpha_min < 1/R²``). ``inner_logit`` / ``outer_logit`` are the network's logits there, evaluated
    from ``W, w, b`` (equal to ``−b (α r² − 1)``). The sign of each eigenvector is arbitrary (``−x`` is
    equally bad).
    """

    inner_x: jax.Array
    inner_logit: jax.Array
    alpha_max: jax.Array
    outer_x: jax.Array
    outer_logit: jax.Array
    alpha_min: jax.Array


def worst_case_points(W, w, b, *, R=1.3) -> WorstCasePoints:
    """Worst-case inputs on the inner (radius 1) and outer (radius ``R``) sphere (Gilmer §4).

    On the sphere ``‖x‖ = r`` the logit is ``ŷ = −b (r² Σ αᵢ uᵢ² − 1)`` with ``u = Vᵀx / r`` a unit vector,
    so it is maximised along the eigenvector of ``α_max`` and minimised along that of ``α_min``
    (a Rayleigh quotient). These are the points a perfect manifold attack converges to.

    Args:
      W: ``(h, d)``; w, b: scalars with ``b < 0``; R: outer radius.
    Returns:
      ``WorstCasePoints`` (see its docstring).
    """
    warn_if_float32("worst_case_points", "alphas near 1 or 1/R² decide whether a point is misclassified")
    _check_b(b)
    check_radius(R)
    W = jnp.asarray(W)
    alpha, vh = _alpha_and_vectors(W, w, b, full=True)
    x_in = vh[-1]
    x_out = R * vh[0]

    def logit(x):
        hx = W @ x
        return w * jnp.sum(hx * hx) + b

    return WorstCasePoints(inner_x=x_in, inner_logit=logit(x_in), alpha_max=alpha[-1],
                           outer_x=x_out, outer_logit=logit(x_out), alpha_min=alpha[0])


def worst_case_points_from_variables(variables, *, R=1.3) -> WorstCasePoints:
    """``worst_case_points`` of a ``spheres.sphere.models.QuadraticNet`` from its Flax variables."""
    return worst_case_points(*_params_of(variables), R=R)
