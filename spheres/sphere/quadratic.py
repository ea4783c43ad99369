"""A trained quadratic net seen through the theory (Gilmer et al. 2018, §4), host-side float64.

`alphas_of` extracts the α spectrum of a `QuadraticNet`'s parameters, `quadratic_theory` the
summary tracked during training (fraction of α in [1/R², 1], perfect or not, CLT and exact error
rates as log10 so that rates like 1e-200 survive JSON), and `importance_mc` the importance-sampled
Monte Carlo estimate of both spheres' error rates.
"""

from __future__ import annotations

import jax
import numpy as np

import theory


def alphas_of(params) -> np.ndarray:
    """The sorted α (d,) of quadratic-net parameters ``{"W": (h, d), "w": (), "b": ()}`` (float64)."""
    p = jax.device_get(params)
    with jax.enable_x64(True):
        return np.asarray(theory.alphas(np.asarray(p["W"], np.float64), float(p["w"]), float(p["b"])))


def quadratic_theory(params, R: float) -> dict:
    """The α spectrum and theory error rates of quadratic-net ``params``.

    Returns ``{"alpha_fraction_in_range", "alpha_below", "alpha_above", "alpha_min", "alpha_max",
    "perfect", "log10_clt_inner", "log10_clt_outer", "log10_exact_inner", "log10_exact_outer"}``;
    ``{"alpha_valid": False}`` when ``b >= 0`` (no ellipsoid: the α are undefined).
    """
    W, w, b = (np.asarray(params[k], np.float64) for k in ("W", "w", "b"))
    if not b < 0:
        return {"alpha_valid": False}
    with jax.enable_x64(True):
        alpha = np.asarray(theory.alphas(W, w, b))
        out = {"alpha_fraction_in_range": float(theory.fraction_in_range(alpha, R)),
               "alpha_below": int((alpha < 1 / R**2).sum()), "alpha_above": int((alpha > 1).sum()),
               "alpha_min": float(alpha[0]), "alpha_max": float(alpha[-1]),
               "perfect": bool(theory.is_perfect(alpha, R))}
        ln10 = np.log(10.0)
        for sphere in ("inner", "outer"):
            out[f"log10_clt_{sphere}"] = float(theory.clt_error_rate(alpha, sphere=sphere, R=R, log=True)) / ln10
            out[f"log10_exact_{sphere}"] = float(theory.exact_error_rate(alpha, sphere=sphere, R=R, log=True)) / ln10
    return out


def importance_mc(alpha: np.ndarray, R: float, n: int, key: jax.Array) -> dict:
    """Importance-sampled Monte Carlo error rates per sphere (``theory.mc_error_rate``), ``n``
    samples each, key ``fold_in(key, i)`` for sphere ``i``; an exact zero when no coefficient has
    the error sign. Returns ``{sphere: {"rate", "lower", "upper", "log_rate", "method"}}``."""
    out = {}
    with jax.enable_x64(True):
        for i, sphere in enumerate(("inner", "outer")):
            lam = theory.error_coefficients(alpha, sphere=sphere, R=R)
            if not np.any(lam > 0):
                out[sphere] = {"rate": 0.0, "lower": 0.0, "upper": 0.0, "log_rate": -np.inf,
                               "method": "exact zero (no coefficient has the error sign)"}
                continue
            est = theory.mc_error_rate(alpha, sphere=sphere, R=R, n=n, key=jax.random.fold_in(key, i),
                                       importance=True)
            out[sphere] = {"rate": est.rate, "lower": est.lower, "upper": est.upper,
                           "log_rate": est.log_rate, "method": est.method}
    return out


def exact_worst_case_loss(params, R: float) -> dict:
    """The largest sigmoid cross-entropy on each sphere, exactly: ``{"inner", "outer"}``.

    On the sphere of radius r the logit ``w·Σ(Wx)² + b`` ranges over ``[r²λ_min + b, r²λ_max + b]``
    with ``λ`` the eigenvalues of ``w·WᵀW`` (zeros included when h < d). Inner points (label 0)
    lose most at the largest logit, ``softplus(λ_max + b)``; outer points (label 1) at the
    smallest, ``softplus(−(R²λ_min + b))``. Float64, host side.
    """
    W = np.asarray(params["W"], np.float64)
    w, b = float(params["w"]), float(params["b"])
    lam = np.linalg.eigvalsh(w * (W.T @ W))
    softplus = lambda t: float(np.logaddexp(0.0, t))  # noqa: E731
    return {"inner": softplus(lam[-1] + b), "outer": softplus(-(R * R * lam[0] + b))}


ZERO_ALPHA_RTOL = 1e-9
"""An α counts as zero when ``|α| <= ZERO_ALPHA_RTOL · max|α|``. With ``h < d``, ``theory.alphas``
inserts the ``d − h`` null-space α as exact zeros; the other ``h`` are ``w sᵢ²/(−b)`` from the
float64 SVD of the float32 ``W`` (exact in float64), far above this threshold unless ``W`` is
rank-deficient. An eigen-decomposition of ``WᵀW`` in float64 returns its zeros at ~1e-16 · max."""


def alpha_spectrum(alpha: np.ndarray, R: float, *, rtol: float = ZERO_ALPHA_RTOL) -> dict:
    """Where the α of a quadratic net sit, zeros apart (an undersized net, ``h < d``, has ``d − h``).

    Returns ``{"alpha_zero", "alpha_nonzero", "alpha_nonzero_min", "alpha_nonzero_median",
    "alpha_nonzero_max", "alpha_nonzero_above_1", "alpha_nonzero_below"}`` (below: ``< 1/R²``);
    the statistics are ``None`` when every α is zero.
    """
    alpha = np.asarray(alpha, np.float64)
    scale = float(np.max(np.abs(alpha))) if alpha.size else 0.0
    zero = np.abs(alpha) <= rtol * scale
    nz = alpha[~zero]
    stat = (lambda f: float(f(nz)) if nz.size else None)  # noqa: E731
    return {"alpha_zero": int(zero.sum()), "alpha_nonzero": int(nz.size),
            "alpha_nonzero_min": stat(np.min), "alpha_nonzero_median": stat(np.median),
            "alpha_nonzero_max": stat(np.max), "alpha_nonzero_above_1": int((nz > 1).sum()),
            "alpha_nonzero_below": int((nz < 1 / R**2).sum())}
