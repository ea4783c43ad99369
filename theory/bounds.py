"""Theorem 5.1 of Gilmer et al. 2018: small error sets are close to every point of the sphere.

For any error set ``E`` of the unit sphere ``S^{d−1} ⊂ R^d`` with measure ``μ(E) = μ``, the mean L2
distance ``d(E) = E_{x ~ S^{d−1}} min_{e ∈ E} ‖x − e‖₂`` is at most that of a spherical cap of the same
measure (the isoperimetric inequality: a cap has the smallest ε-expansion), and
``d(E) <= O(Φ⁻¹(1 − μ)/√d)`` (Gilmer §5, Thm 5.1).

The cap ``{x : x₁ >= t}``. With ``x`` uniform, ``x₁² ~ Beta(½, (d−1)/2)`` and the polar angle
``φ = arccos x₁`` has density ``sin^{d−2}φ / B(½, (d−1)/2)`` on ``[0, π]``. With ``ψ = arccos t`` the cap's
angular radius, a point at angle ``φ > ψ`` is at geodesic angle ``φ − ψ`` and chordal (L2) distance
``2 sin((φ − ψ)/2)`` from the cap, so

    d(cap) = (1/B(½, (d−1)/2)) ∫_ψ^π 2 sin((φ − ψ)/2) sin^{d−2}φ dφ.

``cap_distance_bound`` evaluates this by adaptive quadrature; ``asymptotic_distance_bound`` is the
paper's ``Φ⁻¹(1 − μ)/√d``. As ``d → ∞`` at fixed μ, ``√d · t → a = Φ⁻¹(1 − μ)`` but
``√d · d(cap) → a Φ(a) + φ(a) = E[(a − Z)₊]`` (``asymptotic_cap_distance``), both with relative error
O(1/d) (constant growing like ``a²``). The limit exceeds ``a`` by ``φ(a) − a(1 − Φ(a)) ~ φ(a)/a²``, so
the paper's form is the leading term only as ``μ → 0``: ``a/(aΦ(a) + φ(a))`` is 0.9986 at μ = 0.01,
0.883 at μ = 0.2 and 0 at μ = ½. At finite ``d`` and small μ the exact value is *below* the paper's
form (e.g. μ = 1e-6, d = 1000: 0.14999 vs 0.15032), for larger μ above it.

The exact functions are host-side NumPy/SciPy in float64 (not jittable), vectorised by broadcasting
``mu`` against ``d``; the asymptotic ones are jittable ``jax.numpy``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize, special

from ._common import as_float64_array, check_positive_dimension, check_unit_interval


def _check_mu_d(mu, d):
    mu = as_float64_array(mu, "mu")
    d_arr = np.asarray(d)
    if np.any(~np.isfinite(d_arr.astype(float))) or np.any(d_arr < 2) or np.any(np.floor(d_arr) != d_arr):
        raise ValueError(f"d must be integer(s) >= 2, got {d!r}")
    if np.any((mu < 0) | (mu > 1)):
        raise ValueError(f"mu must lie in [0, 1], got {mu!r}")
    return np.broadcast_arrays(mu, d_arr.astype(np.float64))


def _small_cap_angle(m: float, d: float) -> float:
    """Angular radius ``ψ ∈ [0, π/2]`` of the cap ``{x₁ >= cos ψ}`` of measure ``m <= ½`` on ``S^{d−1}``.

    ``P(x₁ >= t) = ½ P(x₁² >= t²)`` for ``t >= 0``. Both ``s = sin²ψ = 1 − t²`` (from
    ``I_s((d−1)/2, ½) = 2m``) and ``t² = cos²ψ`` (from the upper tail ``Q_{t²}(½, (d−1)/2) = 2m``) are
    computed by Boost's inverse incomplete beta, and the angle is taken from the smaller of the two,
    so that ``ψ`` is relative-accurate near 0 (tiny ``m``, small ``d``) and near ``π/2`` (``m`` near ½
    or large ``d``).
    """
    if m <= 0:
        return 0.0
    if m >= 0.5:
        return 0.5 * math.pi
    if d == 2:                               # circle: the polar angle is uniform on [0, π]
        return math.pi * m
    a = 0.5 * (d - 1.0)
    s = special.betaincinv(a, 0.5, 2.0 * m)
    t2 = special.betainccinv(0.5, a, 2.0 * m)
    return math.asin(math.sqrt(s)) if s <= t2 else math.acos(math.sqrt(t2))


def _cap_angles(m: float, d: float) -> tuple[float, float]:
    """``(ψ, π − ψ)`` for the cap of measure ``m``, each computed without cancellation."""
    if m <= 0.5:
        psi = _small_cap_angle(m, d)
        return psi, math.pi - psi
    comp = _small_cap_angle(1.0 - m, d)      # 1 − m is exact for m in [½, 1]
    return math.pi - comp, comp


def cap_threshold(mu, d):
    """Height ``t`` of the spherical cap ``{x ∈ S^{d−1} : x₁ >= t}`` of measure ``mu`` (Gilmer §5).

    Solves ``P(x₁ >= t) = mu`` with ``x₁² ~ Beta(½, (d−1)/2)`` (``x`` uniform on the unit sphere in
    ``R^d``): for ``mu <= ½``, ``1 − t² = I⁻¹_{2mu}((d−1)/2, ½)``; ``t(mu) = −t(1 − mu)`` for ``mu > ½``.
    Accurate for ``mu`` from 1e-300 to ``1 − 1e-12`` (verified against mpmath). ``t`` itself rounds to
    1 when ``1 − t`` is below 1e-16; ``cap_angle`` gives the angle ``arccos t`` without that loss.

    Shapes: ``mu`` and ``d`` broadcast; returns float64 NumPy. Host-side (not jittable).
    """
    mu, d = _check_mu_d(mu, d)
    out = np.array([math.cos(_cap_angles(m, dd)[0]) for m, dd in zip(mu.ravel(), d.ravel())])
    out = out.reshape(mu.shape)
    return out[()] if out.ndim == 0 else out


def cap_angle(mu, d):
    """Angular radius ``ψ = arccos t ∈ [0, π]`` of the cap of measure ``mu`` on ``S^{d−1}``.

    Relative-accurate even where ``t`` rounds to ±1 (e.g. ``d = 3``, ``mu = 1e-300``: ψ ≈ 2.8e-150).
    Shapes as ``cap_threshold``.
    """
    mu, d = _check_mu_d(mu, d)
    out = np.array([_cap_angles(m, dd)[0] for m, dd in zip(mu.ravel(), d.ravel())]).reshape(mu.shape)
    return out[()] if out.ndim == 0 else out


def _log_beta_half(a: float) -> float:
    """``log B(½, a)`` to ~1e-16 relative (``scipy.special.betaln`` loses ~1e-10 at ``a ~ 10⁶``).

    ``log B(½, a) = ½ log π − [log Γ(a + ½) − log Γ(a)]``; for ``a >= 15`` the bracket is its Stirling
    series ``½ log a − 1/(8a) + 1/(192a³) − 1/(640a⁵) + 17/(14336a⁷) − 31/(18432a⁹)`` (from the Bernoulli
    polynomials ``B_n(½) = (2^{1−n} − 1) B_n``; the next term is below 1e-15 relative).
    """
    if a < 15.0:
        return 0.5 * math.log(math.pi) + special.gammaln(a) - special.gammaln(a + 0.5)
    z = 1.0 / a
    z2 = z * z
    series = z * (-1 / 8 + z2 * (1 / 192 + z2 * (-1 / 640 + z2 * (17 / 14336 + z2 * (-31 / 18432)))))
    return 0.5 * math.log(math.pi) - (0.5 * math.log(a) + series)


def _cap_distance(m: float, d: float) -> float:
    if m >= 1.0:
        return 0.0
    _, psi_c = _cap_angles(m, d)             # ψ' = π − ψ: the angular size of the complement
    if psi_c <= 0.0:
        return 0.0
    # integrate over v = φ − ψ ∈ [0, ψ'] with v = ψ' w:  sin φ = sin(ψ' − v), both ends accurate
    k = d - 2.0
    half = 0.5 * psi_c

    def log_g(w):
        v, rest = psi_c * w, psi_c * (1.0 - w)
        out = math.log(2.0 * math.sin(0.5 * v)) if v > 0 else -math.inf
        if k > 0:
            out += k * math.log(math.sin(rest)) if rest > 0 else -math.inf
        return out

    if k > 0:
        # mode of the integrand: ½ cot(v/2) = (d − 2) cot(ψ' − v), a monotone equation in w
        def dlog(w):
            return 0.5 / math.tan(half * w) - k / math.tan(psi_c * (1.0 - w))
        w_star = optimize.brentq(dlog, 1e-300, 1.0 - 1e-16, xtol=1e-15, rtol=1e-13, maxiter=500)
        curv = psi_c**2 * (0.25 / math.sin(half * w_star) ** 2 + k / math.sin(psi_c * (1.0 - w_star)) ** 2)
        width = 1.0 / math.sqrt(curv)
    else:
        w_star, width = 1.0, 1.0
    ref = log_g(w_star)
    pts = sorted({min(max(w_star + j * width, 0.0), 1.0) for j in (-30, -12, -5, -2, 0, 2, 5, 12, 30)}
                 - {0.0, 1.0})
    integral, _ = integrate.quad(lambda w: math.exp(log_g(w) - ref), 0.0, 1.0, points=pts or None,
                                 epsabs=0.0, epsrel=1e-12, limit=400)
    return math.exp(ref - _log_beta_half(0.5 * (d - 1.0))) * psi_c * integral


def cap_distance_bound(mu, d):
    """Exact mean L2 distance from a uniform point of ``S^{d−1}`` to a cap of measure ``mu`` (Thm 5.1).

    ``d(cap) = (1/B(½, (d−1)/2)) ∫_ψ^π 2 sin((φ − ψ)/2) sin^{d−2}φ dφ`` with ``ψ = cap_angle(mu, d)``
    (module docstring). By the isoperimetric inequality this bounds the mean distance to the nearest
    error of *any* model whose inner-sphere error set has measure ``mu`` (Gilmer §5, Thm 5.1):
    ``d(E) <= cap_distance_bound(mu(E), d)``.

    Evaluated by adaptive Gauss–Kronrod quadrature (``scipy.integrate.quad``, relative tolerance
    1e-12) in a variable where both ends are cancellation-free, with breakpoints around the integrand's
    mode (its width shrinks like ``1/√d``). Verified against 30-digit mpmath quadrature to ~1e-11
    relative for ``d`` from 2 to 10⁶ and ``mu`` from 1e-300 to ``1 − 1e-12``.

    Shapes: ``mu`` and ``d`` broadcast; returns float64 NumPy. Host-side (not jittable).

    Example:
      >>> theory.cap_distance_bound(0.01, 500)      # 0.104178 (asymptotic_distance_bound: 0.104037)
    """
    mu, d = _check_mu_d(mu, d)
    out = np.array([_cap_distance(m, dd) for m, dd in zip(mu.ravel(), d.ravel())]).reshape(mu.shape)
    return out[()] if out.ndim == 0 else out


def _inverse_upper_normal(mu):
    """``a = Φ⁻¹(1 − mu)`` without forming ``1 − mu`` for small ``mu`` (jnp, jittable)."""
    mu = jnp.asarray(mu)
    small = mu <= 0.5
    return jnp.where(small, -jax.scipy.special.ndtri(jnp.where(small, mu, 0.5)),
                     jax.scipy.special.ndtri(jnp.where(small, 0.5, 1.0 - mu))) + 0.0   # −0 → +0


def asymptotic_distance_bound(mu, d):
    """The paper's asymptotic form of Theorem 5.1: ``Φ⁻¹(1 − mu) / √d`` (Gilmer §5).

    ``Φ⁻¹(1 − mu)`` is computed as ``−Φ⁻¹(mu)`` for ``mu <= ½`` (accurate down to 1e-300). This is the
    large-``d`` limit of the cap's height ``t`` (``√d · cap_threshold → Φ⁻¹(1 − mu)``, error O(1/d));
    the exact mean distance ``cap_distance_bound`` tends to ``asymptotic_cap_distance`` instead, which is
    larger by ``φ(a) − a(1 − Φ(a))`` (relatively small only for small ``mu``). Negative for ``mu > ½``.

    Shapes: ``mu`` and ``d`` broadcast. Jittable and differentiable.
    """
    check_unit_interval(mu, "mu")
    check_positive_dimension(d)
    return _inverse_upper_normal(mu) / jnp.sqrt(jnp.asarray(d, dtype=jnp.result_type(float)))


def asymptotic_cap_distance(mu, d):
    """Large-``d`` limit of the exact mean distance to the cap: ``(a Φ(a) + φ(a)) / √d``, ``a = Φ⁻¹(1 − mu)``.

    Derivation: near the equator ``x₁ ≈ Z/√d`` with ``Z ~ N(0, 1)`` and the distance to the cap
    ``{x₁ >= a/√d}`` is ``≈ (a − Z)₊/√d``, whose mean is ``(a Φ(a) + φ(a))/√d``. ``cap_distance_bound``
    converges to it with relative error O(1/d) (see the tests). Jittable.
    """
    check_unit_interval(mu, "mu")
    check_positive_dimension(d)
    a = _inverse_upper_normal(mu)
    # mu = 1 gives a = -inf, where a·Φ(a) is -inf·0; the limit (every point in the cap) is 0
    whole = jnp.isneginf(a)
    a = jnp.where(whole, 0.0, a)
    pdf = jnp.exp(-0.5 * a * a) / jnp.sqrt(2.0 * jnp.pi)
    value = jnp.where(whole, 0.0, a * jax.scipy.special.ndtr(a) + pdf)
    return value / jnp.sqrt(jnp.asarray(d, dtype=jnp.result_type(float)))
