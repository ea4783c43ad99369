"""The simplified k-dimensional quadratic model (Gilmer et al. 2018, §4).

**Two α values** (a generalisation). The ellipsoid coefficients take one value ``a`` on ``k`` of the ``d``
coordinates and another value ``b`` on the remaining ``d − k``. With ``λ = α − 1`` (inner sphere) or
``λ = 1 − α R²`` (outer sphere, see ``theory.error_rate``) the error event is

    λ_a X + λ_b Y > 0,     X ~ χ²_k,  Y ~ χ²_{d−k}  independent.

When ``λ_a > 0 > λ_b`` this is ``B > β`` for ``B = X/(X + Y) ~ Beta(k/2, (d−k)/2)`` and
``β = |λ_b| / (λ_a + |λ_b|)``, so the exact rate is a regularised incomplete beta function
``I_{1−β}((d−k)/2, k/2)`` (an F-distribution tail) — a closed form independent of the contour
integral in ``exact_error_rate``. It is evaluated in log space (a continued fraction in the far
tail), vectorised over ``k``, ``d``, ``a``, ``b`` by broadcasting.

The paper's own model, a threshold on ``k`` coordinates with the best threshold, is in
`theory.threshold`.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ._common import as_float64_array, check_radius, check_sphere

_TINY = 1e-280          # below this, scipy's betainc is replaced by the log-space continued fraction


def _log_betainc_cf(a, b, x, xc):
    """``log I_x(a, b)`` by the Lentz continued fraction (valid and fast for ``x < (a+1)/(a+b+2)``).

    ``I_x(a, b) = x^a (1−x)^b / (a B(a, b)) · CF`` with the classical continued fraction
    (Numerical Recipes §6.4); the prefactor is kept in log space, the CF is O(1). ``xc = 1 − x``.
    """
    a, b, x, xc = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, x, xc)))
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    dd = 1.0 - qab * x / qap
    dd = np.where(np.abs(dd) < tiny, tiny, dd)
    dd = 1.0 / dd
    h = dd.copy()
    done = np.zeros(x.shape, bool)
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        dd = 1.0 + aa * dd
        dd = np.where(np.abs(dd) < tiny, tiny, dd)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        dd = 1.0 / dd
        h = np.where(done, h, h * dd * c)
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        dd = 1.0 + aa * dd
        dd = np.where(np.abs(dd) < tiny, tiny, dd)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        dd = 1.0 / dd
        delta = dd * c
        h = np.where(done, h, h * delta)
        done |= np.abs(delta - 1.0) < 1e-16
        if done.all():
            break
    return a * np.log(x) + b * np.log(xc) - np.log(a) - special.betaln(a, b) + np.log(h)


def log_betainc(a, b, x, xc=None):
    """``log I_x(a, b)``, the log of the regularised incomplete beta function, accurate in the tail.

    Uses ``scipy.special.betainc`` where it is above 1e-280 and a log-space continued fraction below
    (where it would underflow or lose relative accuracy). Pass ``xc = 1 − x`` when it is known more
    accurately than ``1 − x``. Broadcasting, float64.
    """
    a, b, x = (np.asarray(v, dtype=np.float64) for v in (a, b, x))
    xc = 1.0 - x if xc is None else np.asarray(xc, dtype=np.float64)
    a, b, x, xc = np.broadcast_arrays(a, b, x, xc)
    with np.errstate(divide="ignore"):
        r = special.betainc(a, b, x)
        out = np.atleast_1d(np.log(r))
    tail = np.atleast_1d((r < _TINY) & (x > 0))
    if np.any(tail):
        a1, b1, x1, c1 = (np.atleast_1d(v)[tail] for v in (a, b, x, xc))
        out[tail] = _log_betainc_cf(a1, b1, x1, c1)
    return out.reshape(r.shape)[()] if r.ndim == 0 else out


def simplified_alpha(k: int, d: int, a: float, b: float) -> np.ndarray:
    """The simplified model's coefficients: ``a`` on the first ``k`` coordinates, ``b`` on the other ``d − k``.

    Returns ``alpha (d,)`` float64 (usable with ``exact_error_rate`` / ``mc_error_rate``).
    """
    if not (0 <= k <= d and int(k) == k and int(d) == d and d >= 1):
        raise ValueError(f"need integers 0 <= k <= d, d >= 1; got k={k}, d={d}")
    as_float64_array([a, b], "a and b")
    return np.concatenate([np.full(int(k), float(a)), np.full(int(d) - int(k), float(b))])


def _check_kd(k, d, a, b):
    k = np.asarray(k)
    d = np.asarray(d)
    if np.any(k < 0) or np.any(k > d) or np.any(d < 1) or np.any(np.floor(k) != k) or np.any(np.floor(d) != d):
        raise ValueError(f"need integers 0 <= k <= d, d >= 1; got k={k!r}, d={d!r}")
    a = as_float64_array(a, "a")
    b = as_float64_array(b, "b")
    return np.broadcast_arrays(k.astype(np.float64), d.astype(np.float64), a, b)


def _lambdas(a, b, sphere, R):
    check_sphere(sphere)
    R = check_radius(R)
    return (a - 1.0, b - 1.0) if sphere == "inner" else (1.0 - a * R**2, 1.0 - b * R**2)


def simplified_exact_error_rate(k, d, a, b, *, sphere: str = "inner", R=1.3, log: bool = False):
    """Exact error rate of the simplified model (``α = a`` on ``k`` coordinates, ``b`` on ``d − k``).

    ``P[λ_a χ²_k + λ_b χ²_{d−k} > 0]`` with ``λ = α − 1`` (inner) or ``1 − α R²`` (outer). For mixed signs
    (``λ_p > 0`` on ``n_p`` coordinates, ``λ_n < 0`` on ``n_n``) it equals ``I_{λ_p/(λ_p+|λ_n|)}(n_n/2, n_p/2)``;
    it is 1 when no coordinate has ``λ < 0`` but some has ``λ > 0``, and 0 when none has ``λ > 0``.

    Shapes: ``k, d, a, b`` broadcast together; returns float64 NumPy (``log P`` with ``log=True``,
    finite far below 1e-300). Relative accuracy ~1e-12 for ``d <= 10⁴`` and ~1e-10 at ``d ~ 10⁵–10⁶``
    (rounding in ``betaln`` of large arguments), checked against mpmath and against
    ``exact_error_rate``; near ``P = 1`` the log form keeps ``1 − P`` relative-accurate too.
    """
    k, d, a, b = _check_kd(k, d, a, b)
    la, lb = _lambdas(a, b, sphere, R)
    na, nb = k, d - k
    pos = ((na > 0) & (la > 0)) | ((nb > 0) & (lb > 0))
    neg = ((na > 0) & (la < 0)) | ((nb > 0) & (lb < 0))
    mixed = pos & neg
    # orient so that group "p" has λ > 0 and group "n" has λ < 0
    a_pos = la > 0
    lp = np.where(a_pos, la, lb)
    ln = -np.where(a_pos, lb, la)
    n_p = np.where(a_pos, na, nb)
    n_n = np.where(a_pos, nb, na)
    out = np.where(pos, 0.0, -np.inf)
    if np.any(mixed):
        tot = lp[mixed] + ln[mixed]
        x, xc = lp[mixed] / tot, ln[mixed] / tot
        log_p = log_betainc(0.5 * n_n[mixed], 0.5 * n_p[mixed], x, xc)
        log_q = log_betainc(0.5 * n_p[mixed], 0.5 * n_n[mixed], xc, x)      # log(1 − P)
        # the smaller side directly, the larger as log1p(−smaller): both relative-accurate
        with np.errstate(divide="ignore"):
            out[mixed] = np.where(log_p <= log_q, log_p, np.log1p(-np.exp(log_q)))
    out = out if log else np.exp(out)
    return out[()] if out.ndim == 0 else out


def simplified_clt_error_rate(k, d, a, b, *, sphere: str = "inner", R=1.3, log: bool = False):
    """CLT (Prop. 4.1) estimate for the simplified model: ``Φ(μ/σ)``.

    ``μ = k λ_a + (d − k) λ_b``, ``σ² = 2 (k λ_a² + (d − k) λ_b²)`` with ``λ`` as in
    ``simplified_exact_error_rate``. Shapes broadcast; log space via ``log_ndtr``.
    """
    k, d, a, b = _check_kd(k, d, a, b)
    la, lb = _lambdas(a, b, sphere, R)
    mu = k * la + (d - k) * lb
    sigma = np.sqrt(2.0 * (k * la**2 + (d - k) * lb**2))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sigma > 0, special.log_ndtr(mu / np.where(sigma > 0, sigma, 1.0)), -np.inf)
    out = out if log else np.exp(out)
    return out[()] if out.ndim == 0 else out
