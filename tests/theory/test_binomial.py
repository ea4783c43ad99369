"""`theory.clopper_pearson`, the one binomial interval of the project, against its definition.

The interval is checked without scipy's beta quantiles (what the code uses): the ends solve
P(X ≥ k | p_lo) = a/2 and P(X ≤ k | p_hi) = a/2, summed term by term in mpmath; coverage is
enumerated exactly over all outcomes k for small n; monotonicity and nesting are properties.
"""

from __future__ import annotations

import math

import mpmath as mp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.binomial import clopper_pearson

mp.mp.dps = 40


def binom_tail_ge(k: int, n: int, p) -> mp.mpf:
    """P(X ≥ k) for X ~ Binomial(n, p), summed exactly in mpmath."""
    p = mp.mpf(p)
    return mp.fsum(mp.binomial(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


def binom_cdf(k: int, n: int, p) -> mp.mpf:
    p = mp.mpf(p)
    return mp.fsum(mp.binomial(n, j) * p**j * (1 - p) ** (n - j) for j in range(0, k + 1))


@pytest.mark.parametrize("k,n,confidence", [(1, 10, 0.95), (3, 10, 0.95), (9, 10, 0.95), (5, 40, 0.9),
                                            (17, 60, 0.99), (1, 7, 0.5)])
def test_ends_solve_the_defining_tail_equations(k, n, confidence):
    lo, hi = clopper_pearson(k, n, confidence)
    a = 1 - confidence
    # Each end is a root of a smooth monotone tail; scipy's beta quantile is accurate to ~1e-12
    # relative, so the tail there equals a/2 to 1e-8 relative (the slope is O(n) at most).
    assert float(binom_tail_ge(k, n, lo)) == pytest.approx(a / 2, rel=1e-8)
    assert float(binom_cdf(k, n, hi)) == pytest.approx(a / 2, rel=1e-8)


@pytest.mark.parametrize("n,confidence", [(1, 0.95), (10, 0.95), (10_000_000, 0.95), (50, 0.8)])
def test_closed_form_ends_at_zero_and_n(n, confidence):
    a = 1 - confidence
    lo0, hi0 = clopper_pearson(0, n, confidence)
    lon, hin = clopper_pearson(n, n, confidence)
    assert lo0 == 0.0 and hin == 1.0
    # at k = 0, P(X ≤ 0 | p) = (1 − p)^n = a/2; at k = n, P(X ≥ n | p) = p^n = a/2 (exact in mpmath)
    exact_hi = 1 - mp.power(mp.mpf(a) / 2, mp.mpf(1) / n)
    exact_lo = mp.power(mp.mpf(a) / 2, mp.mpf(1) / n)
    assert hi0 == pytest.approx(float(exact_hi), rel=1e-12)      # expm1: no cancellation
    assert lon == pytest.approx(float(exact_lo), rel=1e-12)
    if n == 10_000_000:
        assert hi0 == pytest.approx(3.6888794e-7, rel=1e-7)       # the module doc's number, "rule of 3"/n


@pytest.mark.parametrize("n", [1, 2, 5, 12, 25])
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_exact_coverage_by_enumeration(n, confidence):
    """Clopper–Pearson is conservative: for every p, P(lo(X) ≤ p ≤ hi(X)) ≥ confidence. Enumerated
    over all k on a fine grid of p, exactly (mpmath probabilities)."""
    intervals = [clopper_pearson(k, n, confidence) for k in range(n + 1)]
    worst = 1.0
    for i in range(1, 400):
        p = i / 400
        cover = mp.fsum(mp.binomial(n, k) * mp.mpf(p) ** k * (1 - mp.mpf(p)) ** (n - k)
                        for k, (lo, hi) in enumerate(intervals) if lo <= p <= hi)
        worst = min(worst, float(cover))
    assert worst >= confidence - 1e-12
    # ... and not vacuously wide: from n = 5 the worst case is within 2a of the nominal level
    # (an interval at level a/4 would cover ≥ 1 − a/2 everywhere and fail this).
    if n >= 5:
        assert worst < confidence + 2 * (1 - confidence)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 500), data=st.data(), confidence=st.floats(0.5, 0.999))
def test_monotone_in_k_and_nested_in_confidence(n, data, confidence):
    k = data.draw(st.integers(0, n))
    lo, hi = clopper_pearson(k, n, confidence)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert lo < hi
    if k < n:
        lo2, hi2 = clopper_pearson(k + 1, n, confidence)
        assert lo2 > lo and hi2 > hi
    # higher confidence, wider interval containing the narrower one
    wlo, whi = clopper_pearson(k, n, min(0.9999, confidence + 0.0005 + (1 - confidence) / 2))
    assert wlo <= lo and whi >= hi
    assert (k == 0 and wlo == lo == 0.0) or wlo < lo
    assert (k == n and whi == hi == 1.0) or whi > hi
    # symmetry: k successes is n − k failures
    slo, shi = clopper_pearson(n - k, n, confidence)
    assert slo == pytest.approx(1 - hi, abs=1e-12) and shi == pytest.approx(1 - lo, abs=1e-12)


@pytest.mark.parametrize("k,n,confidence", [(-1, 5, 0.95), (6, 5, 0.95), (0, 0, 0.95), (1.5, 5, 0.95),
                                            (True, 5, 0.95), (1, 5, 0.0), (1, 5, 1.0), (1, 5, 1.5),
                                            (1, False, 0.95), (1, 5.5, 0.95)])
def test_refuses_bad_input(k, n, confidence):
    with pytest.raises(ValueError):
        clopper_pearson(k, n, confidence)


def test_accepts_integral_floats_and_numpy_ints():
    import numpy as np
    assert clopper_pearson(3.0, 10.0) == clopper_pearson(3, 10) == clopper_pearson(np.int64(3), np.int32(10))
    lo, hi = clopper_pearson(3, 10)
    assert isinstance(lo, float) and isinstance(hi, float) and math.isfinite(lo)


# --------------------------------------------------------------------------- two rates compared

def _difference_coverage(n1, n2, grid=13):
    """Exact coverage of `difference_interval` at each (p1, p2) of a grid: the probability, summed
    over every outcome (k1, k2), that the interval holds p1 − p2."""
    import numpy as np
    from scipy import stats

    from theory.binomial import difference_interval

    ci = np.array([[difference_interval(k1, n1, k2, n2)[1:] for k2 in range(n2 + 1)] for k1 in range(n1 + 1)])
    out = []
    for p1 in np.linspace(0.02, 0.98, grid):
        for p2 in np.linspace(0.02, 0.98, grid):
            w = np.outer(stats.binom.pmf(np.arange(n1 + 1), n1, p1), stats.binom.pmf(np.arange(n2 + 1), n2, p2))
            out.append(w[(ci[..., 0] <= p1 - p2) & (p1 - p2 <= ci[..., 1])].sum())
    return np.array(out)


@pytest.mark.parametrize("n1, n2, worst", [(30, 20, 0.95), (100, 100, 0.95), (15, 15, 0.92)])
def test_difference_interval_coverage_is_exactly_near_nominal(n1, n2, worst):
    """Newcombe's square-and-add is approximate: exact coverage (enumerated, no sampling) stays at
    or above 95 % from n ≈ 20 on and near it below (0.927 at n = 15, as documented), and on
    average it is conservative but not wildly so (≤ 0.99)."""
    cov = _difference_coverage(n1, n2)
    assert cov.min() >= worst and 0.95 <= cov.mean() <= 0.99, (cov.min(), cov.mean())


def test_difference_interval_tends_to_wald_and_is_antisymmetric():
    from theory.binomial import difference_interval

    # 11 % vs 10 % in 10⁶ each: half-widths within 0.1 % of Wald's 1.96·√(p₁q₁/n₁ + p₂q₂/n₂)
    d, lo, hi = difference_interval(110_000, 10**6, 100_000, 10**6)
    wald = 1.959963984540054 * math.sqrt(0.11 * 0.89 / 1e6 + 0.10 * 0.90 / 1e6)
    assert d == pytest.approx(0.01, abs=1e-15)
    assert d - lo == pytest.approx(wald, rel=1e-3) and hi - d == pytest.approx(wald, rel=1e-3)
    # swapping the two rates negates and swaps the ends; equal rates give an interval symmetric about 0
    d2, lo2, hi2 = difference_interval(100_000, 10**6, 110_000, 10**6)
    assert (d2, lo2, hi2) == pytest.approx((-d, -hi, -lo), abs=1e-15)
    _, lo3, hi3 = difference_interval(3, 40, 3, 40)
    assert lo3 == pytest.approx(-hi3, abs=1e-15) and hi3 > 0
    # the extremes stay inside [−1, 1]; 5 of 5 against 0 of 5 is told apart, 1 of 10 against 2 of 10 is not
    assert difference_interval(5, 5, 0, 5)[1] > 0 and difference_interval(5, 5, 0, 5)[2] <= 1.0
    _, lo4, hi4 = difference_interval(1, 10, 2, 10)
    assert lo4 < 0 < hi4
    with pytest.raises(ValueError):
        difference_interval(1, 0, 1, 10)
