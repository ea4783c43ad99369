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
