"""theory.simplified: the k-dimensional model's exact rate (an incomplete beta) — a third, independent
check of exact_error_rate — and its CLT."""

import math

import mpmath as mp
import numpy as np
import pytest

import theory

R = 1.3


pytestmark = pytest.mark.usefixtures("float64")


CASES = [(1, 500, 1.5, 0.99), (250, 500, 1.02, 0.95), (10, 500, 1.1, 0.95), (5, 500, 1.3, 0.7),
         (1, 500, 1.01, 0.7), (1500, 3000, 1.01, 0.98), (3, 10, 2.0, 0.5), (100, 2000, 1.05, 0.5),
         (400, 500, 0.9, 1.3)]


def mp_log_rate(k, d, a, b, sphere="inner"):
    la, lb = (a - 1, b - 1) if sphere == "inner" else (1 - a * R**2, 1 - b * R**2)
    with mp.workdps(50):
        la, lb = mp.mpf(la), mp.mpf(lb)
        if la > 0:
            return mp.log(mp.betainc(mp.mpf(d - k) / 2, mp.mpf(k) / 2, 0, la / (la - lb), regularized=True))
        return mp.log(mp.betainc(mp.mpf(k) / 2, mp.mpf(d - k) / 2, 0, lb / (lb - la), regularized=True))


@pytest.mark.parametrize("k,d,a,b", CASES)
def test_simplified_exact_matches_mpmath_and_the_contour_integral(k, d, a, b):
    log_p = float(theory.simplified_exact_error_rate(k, d, a, b, log=True))
    # tolerance: absolute 1e-10 in log P (= relative 1e-10 in P); observed ≤ 1.4e-12 down to 1e-907
    assert log_p == pytest.approx(float(mp_log_rate(k, d, a, b)), abs=1e-10)
    contour = theory.exact_error_rate(theory.simplified_alpha(k, d, a, b), log=True)
    assert contour == pytest.approx(log_p, abs=1e-10)          # two independent exact methods


@pytest.mark.parametrize("k,d,a,b", [(100, 500, 0.55, 0.7), (499, 500, 0.7, 0.3), (20, 50, 0.5, 0.62)])
def test_simplified_outer_sphere(k, d, a, b):
    log_p = float(theory.simplified_exact_error_rate(k, d, a, b, sphere="outer", R=R, log=True))
    # tolerance: as above
    assert log_p == pytest.approx(float(mp_log_rate(k, d, a, b, "outer")), abs=1e-10)
    contour = theory.exact_error_rate(theory.simplified_alpha(k, d, a, b), sphere="outer", R=R, log=True)
    assert contour == pytest.approx(log_p, abs=1e-10)


def test_simplified_edge_cases_and_vectorisation():
    k = np.arange(0, 6)
    out = theory.simplified_exact_error_rate(k, 5, np.array([[1.5], [0.5], [1.0]]), 0.9)
    assert out.shape == (3, 6)
    assert out[0, 0] == 0.0 and out[0, -1] == 1.0             # k = 0: all α = 0.9; k = d: all α = 1.5
    assert np.all(out[1] == 0.0)                              # α ≤ 1 everywhere: perfect on the inner sphere
    assert np.all(out[2] == 0.0)                              # α = 1 gives λ = 0: contributes nothing
    assert np.all(np.diff(out[0]) > 0)                        # more bad coordinates, more errors
    assert theory.simplified_exact_error_rate(0, 5, 3.0, 1.0 + 1e-9) == 1.0
    with pytest.raises(ValueError):
        theory.simplified_exact_error_rate(6, 5, 1.1, 0.9)
    with pytest.raises(ValueError):
        theory.simplified_exact_error_rate(1.5, 5, 1.1, 0.9)


def test_simplified_curve_for_the_figure_is_fast_and_monotone():
    k = np.arange(0, 3001, 10)
    log_p = theory.simplified_exact_error_rate(k, 3000, 1.01, 0.98, log=True)
    assert log_p[0] == -math.inf and log_p[-1] == 0.0
    assert np.all(np.diff(log_p[:-1]) > 0)                    # log P → 0⁻ keeps 1 − P resolved
    # near P = 1 the log form carries 1 − P = I_β(k/2, (d−k)/2), β = 0.02/0.03, relative-accurately
    with mp.workdps(50):
        q = mp.betainc(mp.mpf(int(k[-2])) / 2, mp.mpf(3000 - int(k[-2])) / 2, 0, mp.mpf(0.02) / mp.mpf(0.03),
                       regularized=True)
    # tolerance: relative 1e-10 on a 1 − P of ~1e-254
    assert -math.expm1(log_p[-2]) == pytest.approx(float(q), rel=1e-10)
    clt = theory.simplified_clt_error_rate(k, 3000, 1.01, 0.98, log=True)
    assert clt.shape == k.shape


@pytest.mark.parametrize("k,d,a,b", CASES[:4])
def test_simplified_clt_equals_the_general_clt(k, d, a, b):
    got = float(theory.simplified_clt_error_rate(k, d, a, b, log=True))
    ref = float(theory.clt_error_rate(theory.simplified_alpha(k, d, a, b), log=True))
    assert got == pytest.approx(ref, rel=1e-12)               # tolerance: summation order only


def test_log_betainc_tail_matches_mpmath():
    for a, b, x in [(249.5, 0.5, 1e-3), (0.5, 249.5, 0.9), (1000.0, 3.0, 0.5), (10.0, 10.0, 1e-40)]:
        got = float(theory.log_betainc(a, b, x))
        with mp.workdps(50):
            ref = mp.log(mp.betainc(mp.mpf(a), mp.mpf(b), 0, mp.mpf(x), regularized=True))
        # tolerance: 1e-10 absolute in the log (continued fraction + betaln rounding; observed ~1e-13)
        assert got == pytest.approx(float(ref), abs=1e-10), (a, b, x)


# --- added for docs/mutation.md (issue 26): validation, d = 1, σ = 0 and the ends of log_betainc ---

def test_simplified_alpha_layout_and_validation():
    np.testing.assert_array_equal(theory.simplified_alpha(2, 5, 1.5, 0.5), [1.5, 1.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(theory.simplified_alpha(0, 1, 2.0, 3.0), [3.0])     # k = 0, d = 1
    np.testing.assert_array_equal(theory.simplified_alpha(1, 1, 2.0, 3.0), [2.0])     # k = d
    for k, d in [(-1, 5), (6, 5), (1.5, 5), (2, 4.5), (0, 0)]:
        with pytest.raises(ValueError):
            theory.simplified_alpha(k, d, 1.5, 0.5)
    with pytest.raises(ValueError):
        theory.simplified_alpha(2, 5, np.nan, 0.5)


def test_simplified_rates_validate_k_and_d_and_accept_d_one():
    for f in (theory.simplified_exact_error_rate, theory.simplified_clt_error_rate):
        for k, d in [(-1, 5), (6, 5), (1.5, 5), (2, 4.5), (0, 0)]:
            with pytest.raises(ValueError):
                f(k, d, 1.5, 0.9)
    # d = 1: one coordinate, λ = α − 1; the error event λ χ²₁ > 0 is certain for α > 1, impossible else
    assert theory.simplified_exact_error_rate(1, 1, 1.5, 0.9) == 1.0
    assert theory.simplified_exact_error_rate(0, 1, 1.5, 0.9) == 0.0


def test_simplified_clt_with_zero_variance_and_a_closed_form():
    # a = b = 1: every λ = 0, μ = σ = 0, the model is the sphere itself: no error (not NaN)
    assert theory.simplified_clt_error_rate(3, 10, 1.0, 1.0) == 0.0
    assert theory.simplified_clt_error_rate(3, 10, 1.0, 1.0, log=True) == -math.inf
    # k = 2, d = 4, a = 2, b = 0.5 (inner): λ = (1, −½), μ = 2·1 + 2·(−½) = 1, σ² = 2(2·1 + 2·¼) = 5;
    # Φ(1/√5) from math.erf. Tolerance: float64 rounding of log_ndtr
    ref = 0.5 * (1 + math.erf(1 / math.sqrt(5) / math.sqrt(2)))
    assert float(theory.simplified_clt_error_rate(2, 4, 2.0, 0.5)) == pytest.approx(ref, rel=1e-14)


def test_log_betainc_at_the_ends_and_in_the_continued_fraction_range():
    # I_0 = 0 and I_1 = 1 exactly
    assert theory.log_betainc(2.0, 3.0, 0.0) == -math.inf
    assert theory.log_betainc(2.0, 3.0, 1.0) == 0.0
    np.testing.assert_array_equal(theory.log_betainc(2.0, 3.0, np.array([0.0, 1.0])), [-math.inf, 0.0])
    # the continued-fraction branch (I < 1e-280) for several (a, b, x) at once, against mpmath;
    # tolerance: as test_log_betainc_tail_matches_mpmath
    a, b, x = np.array([2.0, 300.0, 0.5]), np.array([3.0, 2.5, 400.0]), np.array([1e-300, 0.05, 0.3])
    got = theory.log_betainc(a, b, x)
    with mp.workdps(50):
        ref = [float(mp.log(mp.betainc(mp.mpf(ai), mp.mpf(bi), 0, mp.mpf(xi), regularized=True)))
               for ai, bi, xi in zip(a, b, x)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_default_outer_radius_is_the_papers_and_options_are_keyword_only():
    # Gilmer et al.'s outer sphere has R = 1.3: the default must be it (a different default silently
    # changes every outer-sphere number computed without R=)
    for f in (theory.simplified_exact_error_rate, theory.simplified_clt_error_rate):
        assert f(100, 500, 0.55, 0.7, sphere="outer") == f(100, 500, 0.55, 0.7, sphere="outer", R=1.3)
        assert f(100, 500, 0.55, 0.7, sphere="outer") != f(100, 500, 0.55, 0.7, sphere="outer", R=1.31)
        # k, d, a, b may be named; sphere, R, log may not be passed by position
        assert f(k=100, d=500, a=0.55, b=0.7, sphere="outer") == f(100, 500, 0.55, 0.7, sphere="outer")
        with pytest.raises(TypeError):
            f(100, 500, 0.55, 0.7, "outer")


def test_log_betainc_continued_fraction_near_the_mean():
    # far tails (I < 1e-280, the continued-fraction branch) with x near a/(a+b), where the fraction
    # needs many terms. Independent reference for integer a, b: I_x(a, b) = P[Bin(a+b−1, x) >= a],
    # summed exactly in 40-digit mpmath. Tolerance: 1e-10 absolute in log I (observed 1.3e-11 on
    # log I ≈ −759, i.e. ~1e-14 relative: betaln rounding)
    for a, b, x in [(8000, 8000, 0.35), (3000, 3000, 0.2)]:
        n = a + b - 1
        with mp.workdps(40):
            xm = mp.mpf(x)
            ref = float(mp.log(mp.fsum(mp.binomial(n, j) * xm**j * (1 - xm) ** (n - j) for j in range(a, n + 1))))
        got = float(theory.log_betainc(float(a), float(b), x))
        assert got < math.log(1e-280)                       # really the continued-fraction branch
        assert got == pytest.approx(ref, abs=1e-10), (a, b, x)


def test_scalar_inputs_give_numpy_scalars():
    # scalars in, a NumPy float64 scalar out (a `float`), not a 0-d array; arrays stay arrays
    for f in (theory.simplified_exact_error_rate, theory.simplified_clt_error_rate):
        for log in (False, True):
            out = f(10, 500, 1.1, 0.95, log=log)
            assert isinstance(out, float) and isinstance(out, np.float64), (f, log, type(out))
        assert f(np.array([10, 20]), 500, 1.1, 0.95).shape == (2,)
    assert isinstance(theory.log_betainc(2.0, 3.0, 0.5), np.float64)
