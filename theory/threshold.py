"""The paper's simplified model: a threshold on k of the d coordinates (Gilmer et al. 2018, §4).

**The paper's model: a threshold on k coordinates.** The decision boundary is ``Σ_{i≤k} zᵢ² = b``: the
model looks at only ``k`` of the ``d`` coordinates (``α = 1/b`` on ``k`` coordinates, ``α = 0`` on the
rest) and says "outer" when ``Σ_{i≤k} zᵢ² > b``; the threshold ``b`` is chosen in the best way for each
``k``. For ``x`` uniform on the sphere of radius ``r``, ``B = Σ_{i≤k} xᵢ²/r² ~ Beta(k/2, (d−k)/2)``, so

    inner error (r = 1):  P[B > b],        outer error (r = R):  P[B < b/R²]

(``threshold_error_rate``, exact or by Prop. 4.1's CLT); ``optimal_threshold`` picks ``b``;
``required_k`` / ``required_fraction`` find the smallest ``k`` reaching a target error rate, the
quantity the paper plots against ``d``. Host-side NumPy/SciPy in float64 throughout.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize, special

from ._common import as_float64_array, check_radius, check_sphere
from .simplified import log_betainc

# --------------------------------------------------------------------------------------------------
# The paper's model: a threshold b on Σ_{i≤k} zᵢ²
# --------------------------------------------------------------------------------------------------

METHODS = ("clt", "exact")
CRITERIA = ("max", "sum")
_LN10 = math.log(10.0)
_UNDERFLOW = 1e-300     # below this x, I_x(a, c) is its leading term (the series correction is < 1e-290)


def _check_int(name: str, v) -> int:
    if isinstance(v, bool) or np.ndim(v) != 0:
        raise ValueError(f"{name} must be an integer scalar, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer scalar, got {v!r}") from None
    if not math.isfinite(f) or f != math.floor(f):
        raise ValueError(f"{name} must be a finite integer, got {v!r}")
    return int(f)


def _check_d(d) -> int:
    d = _check_int("d", d)
    if d < 1:
        raise ValueError(f"d (the input dimension) must be >= 1, got d={d}")
    return d


def _check_k_d(k, d) -> tuple[int, int]:
    d = _check_d(d)
    k = _check_int("k", k)
    if not 1 <= k <= d:
        raise ValueError(f"need 1 <= k <= d (the model looks at k of the d coordinates), got k={k}, d={d}")
    return k, d


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _clt_z(k, d, b, R):
    """``(z_inner, z_outer)`` with Prop. 4.1's estimate ``rate = Φ(z)`` for the threshold model.

    ``α = 1/b`` on ``k`` coordinates and 0 on ``d − k``: inner ``λ = (1/b − 1, −1)``, ``μ = k/b − d``,
    ``σ² = 2(k(1/b − 1)² + d − k)``; outer ``λ = (1 − R²/b, 1)``, ``μ = d − kR²/b``,
    ``σ² = 2(k(1 − R²/b)² + d − k)``; ``z = μ/σ``. Numerator and denominator are multiplied by ``b``
    so tiny ``b`` does not overflow. ``z = −∞`` where ``σ = 0`` (``k = d``, ``b = 1`` or ``R²``: every λ is 0).
    """
    R2 = R * R
    num_in, den_in = k - d * b, np.sqrt(2.0 * (k * (1.0 - b) ** 2 + (d - k) * b * b))
    num_out, den_out = d * b - k * R2, np.sqrt(2.0 * (k * (b - R2) ** 2 + (d - k) * b * b))
    with np.errstate(divide="ignore", invalid="ignore"):
        z_in = np.where(den_in > 0, num_in / np.where(den_in > 0, den_in, 1.0), -np.inf)
        z_out = np.where(den_out > 0, num_out / np.where(den_out > 0, den_out, 1.0), -np.inf)
    return z_in, z_out


def _log_betainc_any(a, c, x, xc, log_x, log_xc):
    """``log I_x(a, c)``, also where ``x`` underflows (given ``log x`` and ``log(1 − x)``).

    ``I_x(a, c) = x^a (1 − x)^c / (a B(a, c)) · (1 + O((a + c) x / (a + 1)))``, so below ``x = 1e-300``
    the leading term is exact in float64.
    """
    small = np.asarray(x) < _UNDERFLOW
    full = log_betainc(a, c, np.where(small, 0.5, x), np.where(small, 0.5, xc))
    with np.errstate(divide="ignore", invalid="ignore"):
        lead = a * log_x + c * log_xc - np.log(a) - special.betaln(a, c)
    return np.where(small, lead, full)


def _exact_log_inner(k, d, v):
    """``log P[B > b] = log I_{1−b}((d−k)/2, k/2)`` at ``b = expit(v)``, for ``1 <= k < d``.

    ``1 − b = expit(−v)`` keeps full relative accuracy when ``b`` rounds to 1 (large ``v``).
    """
    return _log_betainc_any(0.5 * (d - k), 0.5 * k, special.expit(-v), special.expit(v),
                            special.log_expit(-v), special.log_expit(v))


def _exact_log_outer(k, d, b, log_b, R):
    """``log P[B < b/R²] = log I_{b/R²}(k/2, (d−k)/2)`` for ``0 < b < R²``, ``1 <= k < d``."""
    x = b / (R * R)
    return _log_betainc_any(0.5 * k, 0.5 * (d - k), x, 1.0 - x, log_b - 2.0 * math.log(R), np.log1p(-x))


def threshold_error_rate(k, d, b, *, sphere: str = "inner", R=1.3, method: str = "exact", log: bool = False):
    """Error rate of the paper's simplified model ``Σ_{i≤k} zᵢ² ≷ b`` on one sphere (Gilmer §4).

    The model says "outer" when ``Σ_{i≤k} zᵢ² > b`` (``α = 1/b`` on ``k`` coordinates, 0 on the other
    ``d − k``). With ``B = Σ_{i≤k} xᵢ²/r² ~ Beta(k/2, (d−k)/2)`` for ``x`` uniform on the sphere of radius ``r``:

    * ``method="exact"``: inner ``P[B > b] = I_{1−b}((d−k)/2, k/2)``, outer ``P[B < b/R²] = I_{b/R²}(k/2, (d−k)/2)``,
      in log space (finite far below 1e-300). For ``k = d``, ``B ≡ 1``: inner ``1[b < 1]``, outer ``1[b > R²]``.
    * ``method="clt"``: Prop. 4.1, ``Φ(μ/σ)`` with ``μ, σ`` of ``Σ λᵢ gᵢ²`` (see ``_clt_z``); the same number as
      ``simplified_clt_error_rate(k, d, 1/b, 0, sphere=...)``.

    Args:
      k, d: integers, ``1 <= k <= d``. b: threshold(s), any shape, finite and ``> 0``.
      sphere: ``"inner"`` (radius 1) or ``"outer"`` (radius ``R``). R: outer radius ``> 1``.
      method: ``"exact"`` or ``"clt"``. log: return the natural log of the rate.

    Returns:
      float64, the shape of ``b``.

    Example:
      >>> threshold_error_rate(1500, 3000, 0.6283, sphere="outer")   # ≈ 2.7e-24
    """
    k, d = _check_k_d(k, d)
    check_sphere(sphere)
    R = check_radius(R)
    _check_choice("method", method, METHODS)
    b = as_float64_array(b, "b")
    if np.any(b <= 0):
        raise ValueError("the threshold b must be > 0 (Σ zᵢ² > b with b <= 0 calls every point 'outer')")
    if method == "clt":
        z_in, z_out = _clt_z(k, d, b, R)
        out = special.log_ndtr(z_in if sphere == "inner" else z_out)
    elif k == d:
        out = np.where(b < 1.0 if sphere == "inner" else b > R * R, 0.0, -np.inf)
    elif sphere == "inner":
        below = b < 1.0
        bb = np.where(below, b, 0.5)
        out = np.where(below, _exact_log_inner(k, d, np.log(bb) - np.log1p(-bb)), -np.inf)
    else:
        below = b < R * R
        bb = np.where(below, b, 1.0)
        out = np.where(below, _exact_log_outer(k, d, bb, np.log(bb), R), 0.0)
    out = np.asarray(out, dtype=np.float64)
    out = out if log else np.exp(out)
    return out[()] if out.ndim == 0 else out


class OptimalThreshold(NamedTuple):
    """The best threshold ``b`` for given ``k, d`` and the error rates it gives.

    ``inner_rate``, ``outer_rate`` are float64 (0 below ~1e-308); ``log10_inner``, ``log10_outer`` carry
    them at any size. ``log10_error`` is the criterion's value: ``log10 max(inner, outer)`` for
    ``"max"``, ``log10(inner + outer)`` for ``"sum"``. ``one_minus_b = 1 − b`` to full relative accuracy
    (the exact optimum can lie within 1e-16 of 1 when ``d − k`` is small; ``b`` then prints as 1.0).
    """

    b: float
    inner_rate: float
    outer_rate: float
    log10_inner: float
    log10_outer: float
    log10_error: float
    one_minus_b: float


def _decreasing_root(f, v0: float, *, limit: float = 1e6) -> float:
    """Root of a continuous decreasing ``f``: expand a bracket around ``v0`` geometrically, then Brent."""
    lo, hi, step = v0 - 1.0, v0 + 1.0, 1.0
    while f(lo) < 0:
        step *= 2.0
        lo = v0 - step
        if step > limit:
            raise FloatingPointError("root bracketing failed on the left")
    step = 1.0
    while f(hi) > 0:
        step *= 2.0
        hi = v0 + step
        if step > limit:
            raise FloatingPointError("root bracketing failed on the right")
    return optimize.brentq(f, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=500)


def _optimal_exact(k, d, R, criterion):
    """``(v, log_inner, log_outer)`` at the exact optimum, ``b = expit(v)``, ``1 <= k < d``.

    Both optima lie in ``b < 1``: for ``b >= 1`` the inner rate is 0 and the outer one grows with ``b``.

    * ``"max"``: ``log P[B > b]`` falls and ``log P[B < b/R²]`` rises with ``b``, so they cross once; the
      root of their difference is found in ``v = logit(b)``.
    * ``"sum"``: ``d/db (P_in + P_out) = f(b/R²)/R² − f(b)`` with ``f`` the Beta density, and
      ``log[f(b) R² / f(b/R²)] = k log R + ((d−k)/2 − 1) log[(1 − b)/(1 − b/R²)]``, which for ``d − k > 2`` falls
      from ``k log R > 0`` to ``−∞`` on ``(0, 1)``: a single minimum where ``(1 − b)/(1 − b/R²) = e^L``,
      ``L = −2k log R/(d − k − 2)``, i.e. ``b = (1 − e^L)/(1 − e^L/R²)``. For ``d − k <= 2`` the sum decreases
      all the way to ``b = 1`` (returned as ``v = +∞``).
    """
    log_out_v = lambda v: _exact_log_outer(k, d, special.expit(v), special.log_expit(v), R)  # noqa: E731
    if criterion == "max":
        p = k / d
        v0 = special.logit(min(2 * R * R * p / (1 + R * R), 0.99))     # the normal-approximation crossing
        v = _decreasing_root(lambda v: float(_exact_log_inner(k, d, v) - log_out_v(v)), float(v0))
    elif d - k <= 2:
        return math.inf, -math.inf, float(_exact_log_outer(k, d, 1.0, 0.0, R))
    else:
        L = -2.0 * k * math.log(R) / (d - k - 2)
        # 1 − b = e^L (1 − 1/R²)/(1 − e^L/R²): the common denominator cancels in v = logit(b)
        v = math.log(-math.expm1(L)) - L - math.log1p(-1.0 / (R * R))
    return v, float(_exact_log_inner(k, d, v)), float(log_out_v(v))


def _optimal_clt(k, d, R, criterion):
    """``(v, log_inner, log_outer)`` at the CLT optimum, ``b = R² expit(v)``, ``1 <= k < d``.

    ``z_in`` falls and ``z_out`` rises with ``b`` (``dz_in/d(1/b) ∝ k (d − k)/b > 0``), from
    ``(√(k/2), −√(k/2))`` at ``b → 0`` to ``(< 0, √((d−k)/2))`` at ``b → R²``: ``"max"`` is the root of
    ``z_in − z_out``. For ``"sum"``, any ``b`` that beats the crossing (rate ``ε`` each) has both rates
    below ``2ε``; that interval is bracketed by two more roots, scanned on a grid and refined by Brent.
    """
    R2 = R * R
    z = lambda v: _clt_z(k, d, R2 * special.expit(v), R)               # noqa: E731
    v = _decreasing_root(lambda v: float(np.subtract(*z(v))), 0.0, limit=1e3)
    log_in = lambda v: special.log_ndtr(z(v)[0])                          # noqa: E731
    log_out = lambda v: special.log_ndtr(z(v)[1])                         # noqa: E731
    if criterion == "sum":
        level = math.log(2.0) + float(log_in(v))

        def edge(f, sign):
            step = 1.0
            while f(v + sign * step) < level:
                step *= 2.0
                if step > 64:
                    return v + sign * step
            lo, hi = sorted((v, v + sign * step))
            return optimize.brentq(lambda u: float(f(u)) - level, lo, hi, xtol=1e-12)

        grid = np.linspace(edge(log_in, -1.0), edge(log_out, 1.0), 257)
        objective = lambda u: np.logaddexp(log_in(u), log_out(u))          # noqa: E731
        vals = objective(grid)
        i = int(np.argmin(vals))
        res = optimize.minimize_scalar(lambda u: float(objective(u)), method="bounded",
                                       bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]),
                                       options={"xatol": 1e-12})
        v = float(res.x) if res.fun <= vals[i] else float(grid[i])
    return v, float(log_in(v)), float(log_out(v))


def optimal_threshold(k, d, *, R=1.3, method: str = "clt", criterion: str = "max") -> OptimalThreshold:
    """The best threshold ``b`` for the model ``Σ_{i≤k} zᵢ² ≷ b`` (Gilmer §4: "b chosen in the best way given k").

    ``criterion="max"`` minimises the larger of the inner and outer error rates (for ``k < d`` the optimum
    is interior and the two rates are equal there); ``"sum"`` minimises their sum (the balanced-class
    error times 2). ``method="exact"`` uses the Beta tails of ``threshold_error_rate``, ``"clt"`` Prop. 4.1.
    All searches run on log rates (``log_ndtr``, log incomplete beta) in ``logit(b)``, so rates far below
    1e-300 are resolved; see ``_optimal_exact`` and ``_optimal_clt`` for why each optimum is unique.

    ``k = d`` (the model sees all of ``‖z‖²``): every ``b ∈ [1, R²)`` is perfect; ``b = ((1 + R)/2)²`` is
    returned. The exact rates are then 0; the CLT gives ``Φ(−√(d/2))`` for every ``b ∈ (1, R²)`` (a one-signed
    ``Σ λᵢ gᵢ²`` is not near-normal, and this is the CLT's own answer), so the CLT can fail a target
    even at ``k = d`` when ``d`` is small.

    Args:
      k, d: integers with ``1 <= k <= d``. R: outer radius ``> 1``.
      method: ``"clt"`` (the paper's estimate) or ``"exact"``. criterion: ``"max"`` or ``"sum"``.

    Returns:
      ``OptimalThreshold``.

    Example:
      >>> optimal_threshold(1500, 3000, method="exact").log10_error    # ≈ -23.57 (b ≈ 0.6283)
    """
    k, d = _check_k_d(k, d)
    R = check_radius(R)
    _check_choice("method", method, METHODS)
    _check_choice("criterion", criterion, CRITERIA)
    if k == d:
        b = ((1.0 + R) / 2.0) ** 2
        log_in = log_out = -math.inf if method == "exact" else float(special.log_ndtr(-math.sqrt(d / 2.0)))
        one_minus_b = 1.0 - b
    elif method == "exact":
        v, log_in, log_out = _optimal_exact(k, d, R, criterion)
        b, one_minus_b = float(special.expit(v)), float(special.expit(-v))
    else:
        v, log_in, log_out = _optimal_clt(k, d, R, criterion)
        b = R * R * float(special.expit(v))
        one_minus_b = 1.0 - b
    log_err = max(log_in, log_out) if criterion == "max" else float(np.logaddexp(log_in, log_out))
    return OptimalThreshold(b=b, inner_rate=math.exp(log_in), outer_rate=math.exp(log_out),
                            log10_inner=log_in / _LN10, log10_outer=log_out / _LN10,
                            log10_error=log_err / _LN10, one_minus_b=one_minus_b)


def _check_target(target) -> float:
    if isinstance(target, bool) or np.ndim(target) != 0:
        raise ValueError(f"target must be a scalar error rate in (0, 1), got {target!r}")
    t = float(target)
    if not (math.isfinite(t) and 0.0 < t < 1.0):
        raise ValueError(f"target must be an error rate in (0, 1), got {target!r}")
    return t


def _required_ks(d: int, targets, R, method, criterion, cache: dict) -> list:
    """``required_k`` for several targets, sharing ``log10_error(k)`` evaluations through ``cache``."""
    def log10_error(k):
        if k not in cache:
            cache[k] = optimal_threshold(k, d, R=R, method=method, criterion=criterion).log10_error
        return cache[k]

    out = []
    for t in targets:
        level = math.log10(t)
        if log10_error(d) > level:
            out.append(None)
            continue
        lo, hi = 0, d                       # invariant: error(lo) > target (k = 0 sees nothing), error(hi) <= target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if log10_error(mid) <= level:
                hi = mid
            else:
                lo = mid
        out.append(hi)
    return out


def required_k(d, target, *, R=1.3, method: str = "clt", criterion: str = "max") -> int | None:
    """Smallest ``k`` whose optimal-threshold error rate (``optimal_threshold(...).log10_error``) is ``<= target``.

    Bisection over integer ``k ∈ [1, d]``; it relies on the optimal error decreasing in ``k`` (checked in
    the tests on dense grids of ``k``). Returns ``None`` when even ``k = d`` misses the target, which
    happens only for ``method="clt"`` (its ``k = d`` value is ``Φ(−√(d/2))``; the exact one is 0).
    """
    d = _check_d(d)
    target = _check_target(target)
    R = check_radius(R)
    _check_choice("method", method, METHODS)
    _check_choice("criterion", criterion, CRITERIA)
    return _required_ks(d, [target], R, method, criterion, {})[0]


def required_fraction(d, target, *, R=1.3, method: str = "clt", criterion: str = "max") -> float:
    """``required_k(...) / d``: the fraction of the input the model must look at (the paper's figure).

    NaN when even ``k = d`` misses the target (only possible with ``method="clt"``; see ``required_k``).

    Example:
      >>> required_fraction(3000, 1e-14, method="clt")     # k/d for a CLT error rate of 1e-14 at d = 3000
    """
    k = required_k(d, target, R=R, method=method, criterion=criterion)
    return math.nan if k is None else k / int(d)
