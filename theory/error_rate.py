"""Error rates of the quadratic network on the two spheres (Gilmer et al. 2018, §4, Prop. 4.1).

Reduction to a Gaussian quadratic form. A uniform point of the sphere of radius ``r`` is
``x = r g/‖g‖`` with ``g ~ N(0, I_d)``; in the eigenbasis of ``WᵀW`` the boundary is ``Σ αᵢ xᵢ² = 1``.

* Inner sphere (``r = 1``, label 0): error iff ``ŷ > 0`` iff ``Σ αᵢ xᵢ² > 1 = Σ xᵢ²`` iff
  ``Q = Σ (αᵢ − 1) gᵢ² > 0``.
* Outer sphere (``r = R``, label 1): error iff ``ŷ < 0`` iff ``R² Σ αᵢ uᵢ² < 1`` (``u = g/‖g‖``) iff
  ``Q = Σ (1 − αᵢ R²) gᵢ² > 0``.

The radius cancels, so both error rates are ``P[Σ λᵢ gᵢ² > 0]`` for a weighted sum of independent
χ²₁ variables, with ``λ = α − 1`` (inner) or ``λ = 1 − α R²`` (outer). This module computes it

* ``clt_error_rate``: Proposition 4.1 (the CLT for ``Q``), in log space; jittable.
* ``exact_error_rate``: exactly, by inverting the moment generating function along a vertical
  contour through the saddlepoint, relative-accurate far into the tail (host-side NumPy/SciPy).
* ``mc_error_rate``: Monte Carlo on the actual sphere, plain (Clopper–Pearson interval) or
  importance-sampled by exponential tilting (CLT interval), with jitted chunked inner loops.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy import optimize, special, stats

from .binomial import clopper_pearson
from ._common import (as_float64_array, check_alpha, check_radius, check_sphere, is_concrete, is_int,
                      warn_if_float32)

# --------------------------------------------------------------------------------------------------
# The quadratic form's coefficients
# --------------------------------------------------------------------------------------------------


def error_coefficients(alpha, *, sphere: str = "inner", R=1.3):
    """Coefficients ``λ`` with ``error ⟺ Σ λᵢ gᵢ² > 0``, ``g ~ N(0, I)`` (see the module docstring).

    ``λ = α − 1`` for the inner sphere, ``λ = 1 − α R²`` for the outer sphere.
    Shapes: ``(..., d) -> (..., d)``; works on NumPy and JAX arrays (jittable).
    """
    check_sphere(sphere)
    check_radius(R)
    check_alpha(alpha)
    xp = jnp if isinstance(alpha, jax.Array) or not is_concrete(alpha) else np
    alpha = xp.asarray(alpha)
    return alpha - 1.0 if sphere == "inner" else 1.0 - alpha * R**2


# --------------------------------------------------------------------------------------------------
# Proposition 4.1: the CLT estimate
# --------------------------------------------------------------------------------------------------


def clt_error_rate(alpha, *, sphere: str = "inner", R=1.3, log: bool = False) -> jax.Array:
    """CLT estimate of the quadratic net's error rate (Gilmer Prop. 4.1, typos corrected).

    ``Q = Σ λᵢ gᵢ²`` has mean ``μ = Σ λᵢ`` and variance ``σ² = 2 Σ λᵢ²``; approximating it by
    ``N(μ, σ²)`` gives ``P[Q > 0] ≈ Φ(μ/σ)``. With ``λ = α − 1`` (inner sphere) this is
    ``1 − Φ(−μ/σ)``, ``μ = Σ(αᵢ − 1)``, ``σ² = 2 Σ(αᵢ − 1)²``; on the outer sphere ``λ = 1 − αᵢ R²`` and it
    reads ``Φ(−μ'/σ')`` with ``μ' = Σ(αᵢR² − 1)``, ``σ'² = 2 Σ(αᵢR² − 1)²``.

    Computed as ``log Φ`` (``log_ndtr``) so rates far below 1e-300 are returned in ``log=True`` form
    without underflow. In float32 (``jax_enable_x64`` off) ``αᵢ − 1`` keeps only ~7 digits, so
    ``αᵢ`` within ~1e-7 of 1 are indistinguishable from 1: use float64. The CLT is accurate when many ``λᵢ`` of comparable size contribute and the
    rate is moderate; in the tails it can be off by many orders of magnitude (see
    ``exact_error_rate``). Returns 0 (``-inf`` in log form) when every ``λᵢ = 0``.

    Shapes: ``alpha (..., d) -> (...)``. Jittable and differentiable.
    """
    lam = jnp.asarray(error_coefficients(check_alpha(jnp.asarray(alpha)), sphere=sphere, R=R))
    mu = jnp.sum(lam, axis=-1)
    sigma = jnp.sqrt(2.0 * jnp.sum(lam * lam, axis=-1))
    safe = jnp.where(sigma > 0, sigma, 1.0)
    logp = jnp.where(sigma > 0, jax.scipy.special.log_ndtr(mu / safe), -jnp.inf)
    return logp if log else jnp.exp(logp)


# --------------------------------------------------------------------------------------------------
# The exact probability P[Σ λᵢ gᵢ² > 0]
# --------------------------------------------------------------------------------------------------

_TRAP_RTOL = 1e-13      # trapezoid levels stop when two successive estimates agree to this
_TRUNC_RTOL = 1e-20     # the integrand envelope at the truncation point, relative to its peak
_MAX_EVALS = 200_000_000  # integrand evaluations (nodes x distinct λ) before giving up refining


def _upper_log_prob(lam: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """``log P[Σ nᵢ-fold λᵢ gᵢ² > 0]`` for distinct nonzero ``λ`` with both signs present.

    Gil-Pelaez inversion ``P[Q > 0] = (1/2πi) ∫_{c−i∞}^{c+i∞} M(t)/t dt`` with
    ``M(t) = Π (1 − 2λᵢt)^{−nᵢ/2}`` and ``c`` the saddlepoint of ``K(t) − log t`` in ``(0, 1/(2λ_max))``.
    On ``t = c + iy`` the integrand divided by its value at ``y = 0`` is ``exp φ(y)`` with
    ``Re φ = −¼ Σ nᵢ log(1 + rᵢ²y²) − ½ log(1 + y²/c²)``, ``Im φ = ½ Σ nᵢ atan(rᵢ y) − atan(y/c)``,
    ``rᵢ = 2λᵢ/(1 − 2λᵢc)``, so ``P = exp(K(c) − log c) · (1/π) ∫₀^∞ exp(Re φ) cos(Im φ) dy``.
    On the small side the integral is O(1) relative to the prefactor (the phase is stationary at
    ``y = 0``, so there is little cancellation: ``∫|·| / |∫·|`` was 1.00–1.84, median 1.005, over 200
    random cases). It is computed by
    the trapezoid rule after ``y = σ sinh(u)`` (σ the saddlepoint width), which maps the algebraic tail
    ``|y|^{−n/2−1}`` to an exponential one; the integrand is analytic in a strip around the real
    ``u`` axis (every singularity of ``φ`` lies on the imaginary ``y`` axis at distance ``>= σ/√2``), so
    the rule converges geometrically. The step is halved until two successive refinements agree
    (the last to 1e-13 relative).

    Returns ``(log P, cancellation)`` where ``cancellation = ∫|integrand| / |∫ integrand|`` (≈ 1–2).
    """
    lam_max = lam.max()
    rho = lam / lam_max                      # normalised so that the strip is (1/(2·min)..., 1)
    pos = rho > 0
    one_minus_rho = np.where(pos, 1.0 - rho, 1.0)
    nr = n * rho

    def u_of(c, delta):                      # u = 1 − ρ c, accurate near both ends of (0, 1)
        return np.where(pos, one_minus_rho + rho * delta, 1.0 - rho * c)

    def f(v):                                # c K'(c) − 1, monotone sign in v; c = expit(v)
        c, delta = special.expit(v), special.expit(-v)
        return c * np.sum(0.5 * nr / u_of(c, delta)) - 1.0

    lo, hi = -1.0, 1.0
    while f(lo) > 0:
        lo *= 2.0
        if lo < -1500:
            raise FloatingPointError("saddlepoint search failed (left)")
    while f(hi) < 0:
        hi *= 2.0
        if hi > 1500:
            raise FloatingPointError("saddlepoint search failed (right)")
    v = optimize.brentq(f, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)
    c, delta = special.expit(v), special.expit(-v)
    u = u_of(c, delta)
    r = rho / u
    log_prefactor = -0.5 * np.sum(n * np.log(u)) - math.log(c)
    k2 = np.sum(0.5 * n * r * r) + 1.0 / c**2
    sigma = 1.0 / math.sqrt(k2)

    chunk = max(1, 2_000_000 // max(len(r), 1))

    def integrand(uu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vals = np.empty_like(uu)
        env = np.empty_like(uu)
        for s in range(0, uu.size, chunk):
            us = uu[s:s + chunk]
            y = sigma * np.sinh(us)
            ry = np.multiply.outer(y, r)
            with np.errstate(over="ignore"):
                re = -0.25 * (np.log1p(ry * ry) @ n) - 0.5 * np.log1p((y / c) ** 2)
            im = 0.5 * (np.arctan(ry) @ n) - np.arctan(y / c)
            e = np.exp(re) * sigma * np.cosh(us)
            env[s:s + chunk] = e
            vals[s:s + chunk] = e * np.cos(im)
        return vals, env

    # truncation: the envelope is unimodal in u and decays at least like exp(−u) in the tail
    env0 = integrand(np.array([0.0]))[1][0]
    U = 1.0
    while integrand(np.array([U]))[1][0] > _TRUNC_RTOL * env0:
        U *= 1.5
        if U > 700:
            break
    h = min(0.5, U / 8)
    grid = np.arange(0.0, U + h / 2, h)
    vals, env = integrand(grid)
    T = h * (vals.sum() - 0.5 * vals[0])
    A = h * (env.sum() - 0.5 * env[0])
    converged = False
    prev_diff = math.inf
    for level in range(1, 40):
        h /= 2
        mids = np.arange(h, U + h / 2, 2 * h)
        if mids.size * len(r) > _MAX_EVALS:
            break
        vm, em = integrand(mids)
        T_new = 0.5 * T + h * vm.sum()
        A = 0.5 * A + h * em.sum()
        diff = abs(T_new - T) / abs(T_new)
        T = T_new
        # geometric convergence: accept once two successive refinements are small, so a chance
        # agreement of two coarse levels of an oscillating integrand is not taken for convergence
        if diff <= _TRAP_RTOL and prev_diff <= 1e-5:
            converged = True
            break
        prev_diff = diff
    if not converged or not T > 0:
        warnings.warn(f"exact_error_rate: contour integral did not converge (T={T}, U={U}, h={h}); "
                      "result may be inaccurate", RuntimeWarning, stacklevel=4)
    if not T > 0:
        return math.nan, math.inf
    return log_prefactor + math.log(T / math.pi), A / T


def _log_prob_positive_1d(lam: np.ndarray) -> float:
    lam = lam[lam != 0]
    if not np.any(lam > 0):
        return -math.inf                     # Q <= 0 almost surely (Q ≡ 0 if every λ is 0)
    if not np.any(lam < 0):
        return 0.0                           # Q > 0 almost surely
    scale = np.max(np.abs(lam))
    values, counts = np.unique(lam / scale, return_counts=True)
    counts = counts.astype(np.float64)
    # Contour-integrate first the side that is small if the mean is any guide (P[Q > 0] when E Q < 0).
    # When it is clearly the smaller side, the other is 1 − it: its own contour would pass close to
    # the pole at t = 0 (c ~ 1/|E Q|) where the integrand oscillates ~|E Q| c times — slow, and unneeded.
    flip = float(np.dot(values, counts)) > 0
    first = _upper_log_prob(-values[::-1], counts[::-1]) if flip else _upper_log_prob(values, counts)
    if first[0] < math.log(0.25):
        log_small = first[0]
        return math.log1p(-math.exp(log_small)) if flip else log_small
    second = _upper_log_prob(values, counts) if flip else _upper_log_prob(-values[::-1], counts[::-1])
    log_up, log_down = (second[0], first[0]) if flip else (first[0], second[0])
    total = math.exp(log_up) + math.exp(log_down)
    if not abs(total - 1.0) < 1e-9:
        warnings.warn(f"exact_error_rate: the two sides sum to {total!r}, not 1; result may be "
                      "inaccurate", RuntimeWarning, stacklevel=3)
    # the smaller side comes straight from its contour; the larger one is 1 − (smaller)
    return log_up if log_up <= log_down else math.log1p(-math.exp(log_down))


def quadratic_form_positive_probability(lam, *, log: bool = False):
    """``P[Σᵢ λᵢ gᵢ² > 0]`` for ``g ~ N(0, I_d)``, exact to ~1e-12 relative on either side.

    Both ``P`` and ``1 − P`` are relative-accurate: the smaller of ``P[Q > 0]`` and ``P[Q < 0]`` is
    computed by saddlepoint-contour inversion of the moment generating function (see
    ``_upper_log_prob``) and the larger one as ``1 −`` the smaller. Zeros in ``λ`` contribute nothing;
    the result is exactly 0 when no ``λᵢ > 0`` and exactly 1 when some ``λᵢ > 0`` and none is ``< 0``.
    ``log=True`` returns ``log P`` (use it for rates below ~1e-300).

    Host-side float64 NumPy/SciPy (not jittable). Shapes: ``lam (..., d) -> (...)``.
    Cost: O(d · nodes) with a few hundred nodes; equal ``λᵢ`` are grouped, so a two-valued ``λ`` is
    as cheap at ``d = 10⁶`` as at ``d = 2``.
    """
    lam = as_float64_array(lam, "lam", min_ndim=1)
    flat = lam.reshape(-1, lam.shape[-1])
    out = np.array([_log_prob_positive_1d(row) for row in flat]).reshape(lam.shape[:-1])
    out = out if log else np.exp(out)
    return out[()] if out.ndim == 0 else out


def exact_error_rate(alpha, *, sphere: str = "inner", R=1.3, log: bool = False):
    """Exact error rate of the quadratic net on a sphere: ``P[Σ λᵢ gᵢ² > 0]`` (Gilmer §4).

    ``λ = α − 1`` (inner) or ``λ = 1 − α R²`` (outer), ``g ~ N(0, I_d)`` (see the module docstring).
    The probability is computed by Gil-Pelaez inversion of ``M(t) = Π(1 − 2λᵢt)^{−1/2}`` along the
    vertical line through the saddlepoint of ``K(t) − log t``, scaled by ``exp(K(c) − log c)``, so it is
    relative-accurate (~1e-12 verified against 50-digit mpmath) from 0.5 down to 1e-300 and, with
    ``log=True``, far below. Unlike Imhof's integral it does not cancel in the tail. Exactly 0 for a
    perfect model (no ``λᵢ > 0``), exactly 1 when every nonzero ``λᵢ > 0``.

    Args:
      alpha: ``(..., d)`` ellipsoid coefficients (``theory.alphas``); finite.
      sphere: ``"inner"`` (radius 1) or ``"outer"`` (radius ``R``).
      R: outer radius, ``> 1``.
      log: return ``log P`` instead of ``P``.

    Returns:
      ``(...)`` float64 NumPy value(s). Host-side (NumPy/SciPy, float64), not jittable.

    Example:
      >>> alpha = np.r_[np.full(250, 0.95), np.full(250, 1.02)]
      >>> theory.exact_error_rate(alpha)            # 5.5606e-13 (the CLT says 2.36e-10)
    """
    check_sphere(sphere)
    check_radius(R)
    alpha = as_float64_array(alpha, "alpha", min_ndim=1)
    return quadratic_form_positive_probability(error_coefficients(alpha, sphere=sphere, R=R), log=log)


# --------------------------------------------------------------------------------------------------
# Monte Carlo on the sphere, plain and importance-sampled
# --------------------------------------------------------------------------------------------------


class ErrorRateEstimate(NamedTuple):
    """A Monte Carlo error-rate estimate with a two-sided confidence interval.

    ``rate`` and ``[lower, upper]`` (at level ``confidence``); ``log_rate`` is ``log(rate)`` (finite for
    importance-sampled rates below 1e-308). ``num_hits`` counts samples in the error event (for
    ``method="importance"`` these are draws under the tilted law). Clopper–Pearson (exact binomial)
    interval for ``"plain"``; a CLT interval of the weighted mean for ``"importance"``.
    """

    rate: float
    lower: float
    upper: float
    log_rate: float
    num_samples: int
    num_hits: int
    method: str
    confidence: float


@partial(jax.jit, static_argnames=("chunk_size", "num_chunks", "outer"))
def _mc_block(key, alpha, lam, scale, theta, radius, n_valid, *, chunk_size, num_chunks, outer):
    """Counts errors among ``n_valid`` sphere points drawn in ``num_chunks`` chunks (memory flat)."""
    d = alpha.shape[-1]

    def body(i, carry):
        hits, s1, s2 = carry
        g = jax.random.normal(jax.random.fold_in(key, i), (chunk_size, d), alpha.dtype) * scale
        x = radius * g / jnp.linalg.norm(g, axis=-1, keepdims=True)     # a point of the sphere
        q = jnp.sum(alpha * x * x, axis=-1)                              # Σ αᵢ xᵢ² vs the boundary 1
        err = (q < 1.0) if outer else (q > 1.0)
        err &= (i * chunk_size + jnp.arange(chunk_size)) < n_valid
        w = jnp.where(err, jnp.exp(-theta * jnp.sum(lam * g * g, axis=-1)), 0.0)
        return hits + jnp.sum(err, dtype=jnp.int32), s1 + jnp.sum(w), s2 + jnp.sum(w * w)

    zero = jnp.zeros((), alpha.dtype)
    return lax.fori_loop(0, num_chunks, body, (jnp.zeros((), jnp.int32), zero, zero))


def importance_tilt(lam) -> float:
    """Exponential tilt ``θ`` for importance sampling of ``P[Σ λᵢ gᵢ² > 0]``.

    ``θ`` solves ``K'(θ) = Σ λᵢ/(1 − 2λᵢθ) = 0`` in ``(0, 1/(2 λ_max))`` (the tilted mean of ``Q`` sits on
    the boundary, the Chernoff-optimal tilt, so about half the tilted draws are errors). Returns 0
    when ``E Q = Σ λᵢ >= 0`` (the event is not rare) or when no ``λᵢ > 0`` (it is impossible).
    """
    lam = as_float64_array(lam, "lam", min_ndim=1)
    if not np.any(lam > 0) or lam.sum() >= 0:
        return 0.0
    t_max = 0.5 / lam.max()
    g = lambda v: np.sum(lam / (1.0 - 2.0 * lam * t_max * special.expit(v)))  # noqa: E731
    lo, hi = -1.0, 1.0
    while g(hi) < 0:
        hi *= 2
    while g(lo) > 0:
        lo *= 2
    v = optimize.brentq(g, lo, hi, xtol=1e-14)
    return float(t_max * special.expit(v))


def mc_error_rate(alpha, *, sphere: str = "inner", R=1.3, n: int, key, importance: bool = False,
                  tilt: float | None = None, confidence: float = 0.95,
                  chunk_size: int | None = None) -> ErrorRateEstimate:
    """Monte Carlo error rate of the quadratic net on the actual sphere, with a confidence interval.

    Draws ``x = r g/‖g‖`` (``r = 1`` inner, ``r = R`` outer) and counts ``Σ αᵢ xᵢ² > 1`` (inner errors)
    or ``< 1`` (outer errors), in the eigenbasis of ``WᵀW`` (uniform on the sphere is rotation
    invariant). Samples are drawn in fixed-size chunks inside a jitted ``lax.fori_loop`` (memory
    stays flat at any ``n``); blocks of chunks use ``fold_in(key, block)``.

    ``importance=True`` draws ``gᵢ ~ N(0, 1/(1 − 2θλᵢ))`` (exponential tilting of ``Q = Σ λᵢ gᵢ²`` by
    ``θ = importance_tilt(λ)`` unless ``tilt`` is given) and weights each error by the likelihood ratio
    ``exp(K(θ) − θQ)``, ``K(θ) = −½ Σ log(1 − 2θλᵢ)``; the estimate is unbiased and stays accurate for
    rates far below ``1/n``. Its efficiency degrades slowly into the tail: at ``d = 500`` with
    ``α ~ U(0.9, hi)`` the relative standard error was ~4/√n at a rate of 1e-22 and ~20/√n at 1e-160.
    The interval is the CLT interval of the weighted mean.

    Args:
      alpha: ``(d,)`` coefficients. sphere, R: as in ``exact_error_rate``. n: number of samples.
      key: a ``jax.random`` key (the function never makes keys). confidence: interval level.
      chunk_size: samples per chunk (default: ``~2²²/d``, ≈ 32 MB of float64).

    Returns:
      ``ErrorRateEstimate`` (host floats). Use float64 (``jax_enable_x64``): in float32 the tilt
      weights and the boundary test lose precision.
    """
    check_sphere(sphere)
    R = check_radius(R)
    warn_if_float32("mc_error_rate", "the boundary test Σαx² ≷ 1 and the importance weights lose precision")
    if not is_int(n):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha_np = as_float64_array(alpha, "alpha", min_ndim=1)
    if alpha_np.ndim != 1:
        raise ValueError(f"alpha must have shape (d,), got {alpha_np.shape}")
    d = alpha_np.shape[0]
    lam_np = np.asarray(error_coefficients(alpha_np, sphere=sphere, R=R))
    theta = (importance_tilt(lam_np) if tilt is None else float(tilt)) if importance else 0.0
    if theta != 0.0 and not (np.all(1.0 - 2.0 * theta * lam_np > 0) and np.isfinite(theta)):
        raise ValueError(f"tilt {theta} outside the convergence strip (0, 1/(2 max λ))")
    log_m = -0.5 * float(np.sum(np.log1p(-2.0 * theta * lam_np)))   # K(θ)

    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    chunk_size = int(chunk_size or max(256, min(65536, 2**22 // d)))
    num_chunks = int(min(64, -(-n // chunk_size)))
    block = chunk_size * num_chunks
    args = (jnp.asarray(alpha_np, dtype), jnp.asarray(lam_np, dtype),
            jnp.asarray(1.0 / np.sqrt(1.0 - 2.0 * theta * lam_np), dtype),
            jnp.asarray(theta, dtype), jnp.asarray(1.0 if sphere == "inner" else R, dtype))
    hits, s1, s2 = 0, 0.0, 0.0
    for b in range(-(-n // block)):
        n_valid = min(block, n - b * block)
        h, a, q = _mc_block(jax.random.fold_in(key, b), *args, jnp.asarray(n_valid, jnp.int32),
                            chunk_size=chunk_size, num_chunks=num_chunks, outer=sphere == "outer")
        hits += int(h)
        s1 += float(a)
        s2 += float(q)

    level = 1.0 - confidence
    if not importance:
        rate = hits / n
        lower, upper = clopper_pearson(hits, n, confidence)
        return ErrorRateEstimate(rate, lower, upper, math.log(rate) if rate > 0 else -math.inf,
                                 n, hits, "plain", confidence)
    mean = s1 / n
    var = max(s2 / n - mean**2, 0.0) * n / max(n - 1, 1)
    half = float(stats.norm.ppf(1 - level / 2)) * math.sqrt(var / n)
    log_rate = log_m + math.log(mean) if mean > 0 else -math.inf
    scale = math.exp(log_m)
    return ErrorRateEstimate(math.exp(log_rate), max(mean - half, 0.0) * scale, (mean + half) * scale,
                             log_rate, n, hits, "importance", confidence)
