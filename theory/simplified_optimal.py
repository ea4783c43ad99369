"""Figure and table data for the paper's simplified model ``Σ_{i≤k} zᵢ² ≷ b`` (Gilmer et al. 2018, §4).

The paper plots, against ``d``, the fraction ``k/d`` of the input the model must look at to reach a
given error rate (by the CLT of Prop. 4.1, with ``b`` chosen optimally), and quotes: at ``d = 3000`` the
estimated error is ~1e-14 while looking at 50 % of the input. ``required_fraction_curves`` gives the
figure's data, ``half_input_table`` the rate at ``k/d = 50 %``, and ``paper_example_interpretations``
evaluates readings of that sentence side by side (the optimal-``b`` CLT gives ~3e-22 there, not 1e-14).
The building blocks are ``theory.simplified``'s ``optimal_threshold`` and ``required_k``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize, special, stats

from ._common import check_radius
from .threshold import (CRITERIA, METHODS, _check_choice, _check_d, _check_k_d, _check_target,
                         _clt_z, _required_ks, optimal_threshold, threshold_error_rate)

PAPER_TARGETS = (1e-2, 1e-6, 1e-10, 1e-14, 1e-20)
PAPER_DIMS = np.unique(np.round(np.logspace(1, 4, 31)).astype(int))      # 10 … 10⁴ on a log grid
HALF_INPUT_DIMS = (100, 500, 1000, 2000, 3000)
_LN10 = math.log(10.0)


class FractionCurves(NamedTuple):
    """Required ``k/d`` against ``d``: ``fraction[method]`` has shape ``(len(targets), len(d))``.

    NaN where even ``k = d`` misses the target (the CLT at small ``d``; see ``theory.required_k``).
    """

    d: np.ndarray
    targets: np.ndarray
    fraction: dict
    R: float
    criterion: str


def required_fraction_curves(dims=PAPER_DIMS, targets=PAPER_TARGETS, *, R=1.3, methods=METHODS,
                             criterion: str = "max") -> FractionCurves:
    """The paper's figure: the fraction ``k/d`` needed for each target error rate, against ``d``.

    For every ``d`` and method, one bisection over ``k`` per target (``theory.required_k``), sharing the
    optimal-threshold evaluations between targets. Cost: about a second for the default grid.

    Example:
      >>> curves = required_fraction_curves(dims=(100, 3000), targets=(1e-14,))
      >>> curves.fraction["clt"]            # array([[nan, 0.3817]]): at d = 100 the CLT misses even at k = d
    """
    dims = [_check_d(d) for d in np.atleast_1d(dims)]
    targets = [_check_target(t) for t in np.atleast_1d(targets)]
    R = check_radius(R)
    _check_choice("criterion", criterion, CRITERIA)
    fraction = {}
    for method in methods:
        _check_choice("method", method, METHODS)
        out = np.full((len(targets), len(dims)), np.nan)
        for j, d in enumerate(dims):
            ks = _required_ks(d, targets, R, method, criterion, {})
            out[:, j] = [np.nan if k is None else k / d for k in ks]
        fraction[method] = out
    return FractionCurves(np.asarray(dims), np.asarray(targets), fraction, R, criterion)


def half_input_table(dims=HALF_INPUT_DIMS, *, fraction: float = 0.5, R=1.3, methods=METHODS,
                     criteria=CRITERIA) -> list[dict]:
    """Error rates at ``k = round(fraction·d)`` with the optimal threshold, for each ``d``, method, criterion.

    Rows: ``dict(d, k, method, criterion, b, log10_inner, log10_outer, log10_error)`` (``log10_error`` as
    in ``OptimalThreshold``: of the max for ``"max"``, of the sum for ``"sum"``).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    rows = []
    for d in dims:
        d = _check_d(d)
        k = max(1, round(fraction * d))
        for method in methods:
            for criterion in criteria:
                r = optimal_threshold(k, d, R=R, method=method, criterion=criterion)
                rows.append(dict(d=d, k=k, method=method, criterion=criterion, b=r.b,
                                 log10_inner=r.log10_inner, log10_outer=r.log10_outer,
                                 log10_error=r.log10_error))
    return rows


def format_half_input_table(rows: list[dict]) -> str:
    """``half_input_table`` rows as a Markdown table."""
    lines = ["| d | k | method | criterion | b | log10 inner | log10 outer | log10 error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['d']} | {r['k']} | {r['method']} | {r['criterion']} | {r['b']:.5f} | "
                     f"{r['log10_inner']:.2f} | {r['log10_outer']:.2f} | {r['log10_error']:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Readings of "d = 3000: ~1e-14 while looking at 50 % of the input"
# --------------------------------------------------------------------------------------------------


def _balance(z_pair, lo: float = -40.0, hi: float = 40.0) -> float:
    """``v`` where ``z_in = z_out`` (each monotone in ``v``), for the variant models below."""
    return optimize.brentq(lambda v: float(np.subtract(*z_pair(v))), lo, hi, xtol=1e-13)


def _row(name, description, b, log_in, log_out, reported="max"):
    log_in, log_out = float(log_in), float(log_out)
    rep = max(log_in, log_out) if reported == "max" else float(np.logaddexp(log_in, log_out))
    return dict(name=name, description=description, b=float(b), log10_inner=log_in / _LN10,
                log10_outer=log_out / _LN10, log10_reported=rep / _LN10)


def paper_example_interpretations(d: int = 3000, k: int = 1500, *, R=1.3) -> list[dict]:
    """Candidate readings of the paper's "~1e-14 at d = 3000 with 50 % of the input", evaluated.

    Each row: ``dict(name, description, b, log10_inner, log10_outer, log10_reported)`` where the reported
    rate is the larger of the two spheres' rates (the sum for the ``*-sum`` rows). The readings:

    * the model as defined (``α = 1/b`` on ``k`` coordinates, 0 elsewhere) with the CLT of Prop. 4.1 or
      exactly, ``b`` optimal under either criterion;
    * the same model with a fixed rather than optimal ``b``: the inner-sphere mean ``b = k/d`` and the
      midpoint ``b = (1 + R²)k/(2d)`` of the two classes' means of ``Σ_{i≤k} zᵢ²``;
    * the printed formula's typos: ``1 − Φ(μ/σ)`` (sign) and ``σ = 2Σλᵢ²`` (no square root), ``b`` optimal
      for the typo'd formula;
    * independent Gaussian coordinates ``xᵢ ~ N(0, r²/d)`` instead of the sphere (the CLT's stated
      approximation applied to ``Σ_{i≤k} xᵢ²`` itself, and its exact chi-square rate);
    * ``α R`` in place of ``α R²`` on the outer sphere.
    """
    k, d = _check_k_d(k, d)
    R = check_radius(R)
    R2 = R * R
    rows = []
    for method in METHODS:
        for criterion in CRITERIA:
            r = optimal_threshold(k, d, R=R, method=method, criterion=criterion)
            rows.append(_row(f"{method}-optimal-{criterion}",
                             f"the model as defined, {method.upper() if method == 'clt' else 'exact'}, "
                             f"b minimising the {criterion} of the two rates",
                             r.b, r.log10_inner * _LN10, r.log10_outer * _LN10, criterion))
    for name, b, what in (("b-mean", k / d, "b = k/d, the inner-sphere mean of Σ_{i≤k} z_i²"),
                          ("b-midpoint", (1 + R2) * k / (2 * d), "b = (1 + R²)k/(2d), midway between the class means")):
        for method in METHODS:
            rows.append(_row(f"{method}-{name}", f"the model as defined, {method}, {what}", b,
                             threshold_error_rate(k, d, b, sphere="inner", R=R, method=method, log=True),
                             threshold_error_rate(k, d, b, sphere="outer", R=R, method=method, log=True)))

    # printed typo 1: 1 − Φ(μ/σ) = Φ(−μ/σ); the best b for it is the same crossing z_in = z_out
    z = lambda v: _clt_z(k, d, R2 * special.expit(v), R)                       # noqa: E731
    v = _balance(z)
    zi, zo = z(v)
    rows.append(_row("typo-sign", "printed 1 − Φ(μ/σ) in place of Φ(μ/σ), b optimal",
                     R2 * special.expit(v), special.log_ndtr(-zi), special.log_ndtr(-zo)))

    # printed typo 2: σ = 2 Σ λᵢ² (the square root missing)
    def z_nosqrt(v):
        b = R2 * special.expit(v)
        zi, zo = _clt_z(k, d, b, R)
        s_in = np.sqrt(2.0 * (k * (1 / b - 1) ** 2 + d - k))
        s_out = np.sqrt(2.0 * (k * (1 - R2 / b) ** 2 + d - k))
        return zi * s_in / s_in**2, zo * s_out / s_out**2
    v = _balance(z_nosqrt)
    zi, zo = z_nosqrt(v)
    rows.append(_row("typo-sigma", "printed σ = 2Σλᵢ² (no square root), b optimal for it",
                     R2 * special.expit(v), special.log_ndtr(zi), special.log_ndtr(zo)))

    # independent Gaussian coordinates: S = Σ_{i≤k} xᵢ², E S = r²k/d, Var S = 2r⁴k/d²
    m, s = k / d, math.sqrt(2.0 * k) / d

    def z_gauss(v):
        b = R2 * special.expit(v)
        return (m - b) / s, (b - R2 * m) / (R2 * s)
    v = _balance(z_gauss)
    zi, zo = z_gauss(v)
    rows.append(_row("gauss-clt", "xᵢ ~ N(0, r²/d) independent (no sphere), normal approximation of Σ_{i≤k} xᵢ², b optimal",
                     R2 * special.expit(v), special.log_ndtr(zi), special.log_ndtr(zo)))
    chi = lambda v: (stats.chi2.logsf(d * R2 * special.expit(v), k),          # noqa: E731
                     stats.chi2.logcdf(d * special.expit(v), k))
    v = _balance(chi)
    rows.append(_row("gauss-exact", "xᵢ ~ N(0, r²/d) independent (no sphere), exact χ²_k rates, b optimal",
                     R2 * special.expit(v), *chi(v)))

    # α R in place of α R² on the outer sphere: the same model with an outer radius √R
    r = optimal_threshold(k, d, R=math.sqrt(R), method="clt")
    rows.append(_row("clt-R-not-squared", "CLT with α R in place of α R² on the outer sphere, b optimal",
                     r.b, r.log10_inner * _LN10, r.log10_outer * _LN10))
    return rows


def format_interpretations(rows: list[dict]) -> str:
    """``paper_example_interpretations`` rows as a Markdown table."""
    lines = ["| reading | b | log10 inner | log10 outer | log10 reported | description |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['b']:.4f} | {r['log10_inner']:.2f} | {r['log10_outer']:.2f} | "
                     f"{r['log10_reported']:.2f} | {r['description']} |")
    return "\n".join(lines)
