"""`theory.mc_error_rate`'s interval and importance tilt, and `worst_case_points_from_variables`.

The plain interval must be exactly `theory.clopper_pearson(hits, n, confidence)`; the importance
interval is the CLT interval ``mean ± z_{1−a/2}·sd/√n`` (its half-width scales with the normal
quantile, checked across two confidences); any valid tilt gives an unbiased estimate.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import stats

import theory

pytestmark = pytest.mark.usefixtures("float64")

R = 1.3
ALPHA = np.r_[np.full(5, 8.0), np.full(45, 0.9)]      # inner error rate ≈ 0.3: plain MC sees it


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.999])
def test_plain_interval_is_clopper_pearson_of_the_hits(confidence):
    est = theory.mc_error_rate(ALPHA, n=4000, key=jax.random.key(0), confidence=confidence)
    assert est.method == "plain" and est.num_samples == 4000 and est.confidence == confidence
    assert est.rate == est.num_hits / 4000
    assert (est.lower, est.upper) == theory.clopper_pearson(est.num_hits, 4000, confidence)
    assert est.log_rate == pytest.approx(math.log(est.rate), rel=1e-15)
    # the count is a binomial sample of the exact rate: within 5 sd (false failure ~6e-7)
    p = theory.exact_error_rate(ALPHA)
    assert abs(est.num_hits - 4000 * p) < 5 * math.sqrt(4000 * p * (1 - p))


def test_plain_outer_sphere_counts_the_outer_event():
    alpha = np.r_[np.full(10, 0.3), np.full(40, 0.65)]      # outer errors: Σ α x² < 1 at radius R
    p = theory.exact_error_rate(alpha, sphere="outer", R=R)
    assert 0.05 < p < 0.95
    est = theory.mc_error_rate(alpha, sphere="outer", R=R, n=4000, key=jax.random.key(1))
    assert abs(est.num_hits - 4000 * p) < 5 * math.sqrt(4000 * p * (1 - p))


def _importance(conf, tilt=None, key=2, n=4000):
    alpha = np.r_[np.full(3, 1.6), np.full(47, 0.8)]       # rate ~1e-4: rare for n = 4000
    return alpha, theory.mc_error_rate(alpha, n=n, key=jax.random.key(key), importance=True,
                                       tilt=tilt, confidence=conf)


def test_importance_interval_is_the_clt_interval_at_the_stated_level():
    alpha, e95 = _importance(0.95)
    _, e99 = _importance(0.99)
    assert e95.method == e99.method == "importance"
    assert e95.rate == e99.rate                     # same key: same draws, only the interval differs
    # symmetric about the rate (while the lower end is positive) ...
    assert e95.rate - e95.lower == pytest.approx(e95.upper - e95.rate, rel=1e-9)
    # ... with half-width ∝ z_{1−a/2}: 2.5758 / 1.9600 (a one-sided z_{1−a} would give 2.3263 / 1.6449)
    ratio = (e99.upper - e99.rate) / (e95.upper - e95.rate)
    assert ratio == pytest.approx(stats.norm.ppf(0.995) / stats.norm.ppf(0.975), rel=1e-9)
    exact = theory.exact_error_rate(alpha)
    assert e99.lower <= exact <= e99.upper
    assert e95.log_rate == pytest.approx(math.log(e95.rate), rel=1e-12)


def test_importance_default_tilt_is_the_saddlepoint_and_any_valid_tilt_is_unbiased():
    alpha, default = _importance(0.999)
    lam = np.asarray(theory.error_coefficients(alpha))
    theta = theory.importance_tilt(lam)
    assert 0 < theta < 0.5 / lam.max()
    _, same = _importance(0.999, tilt=theta)
    assert same == default                          # passing the default tilt changes nothing
    exact = theory.exact_error_rate(alpha)
    for t in (0.5 * theta, 0.8 * theta, min(1.3 * theta, 0.45 / lam.max())):
        _, est = _importance(0.999, tilt=t, n=20_000)
        # a different tilt: a different estimate (other draws), inside its own 99.9% interval
        assert est.rate != default.rate
        assert est.lower <= exact <= est.upper, (t, est, exact)
    # the saddlepoint tilt puts about half the draws in the event; a tilt of 0 almost none
    assert 0.3 < default.num_hits / 4000 < 0.7


def test_importance_interval_is_the_unbiased_sample_sd_of_the_weights():
    """The importance interval is ``m ± z·s/√n`` with ``s²`` the unbiased (n − 1) sample variance of the
    weighted indicators. The weights are recovered from runs of n = 1, 2, …, 6 with one key (the first
    draws of a chunk do not depend on n: the rest are masked), W_k = k·rate_k − (k − 1)·rate_(k−1),
    and the n = 6 interval rebuilt from them."""
    alpha = np.r_[np.full(3, 1.6), np.full(47, 0.8)]
    runs = [theory.mc_error_rate(alpha, n=k, key=jax.random.key(4), importance=True) for k in range(1, 7)]
    rates = np.array([0.0] + [e.rate for e in runs])
    w = np.array([k * rates[k] - (k - 1) * rates[k - 1] for k in range(1, 7)])
    assert runs[-1].num_hits >= 2 and np.all(w >= -1e-12 * rates.max())   # weights of a tilted sample
    n, m = 6, w.mean()
    half = stats.norm.ppf(0.975) * math.sqrt(np.var(w, ddof=1) / n)
    assert runs[-1].rate == pytest.approx(m, rel=1e-9)
    assert runs[-1].upper == pytest.approx(m + half, rel=1e-6)
    assert runs[-1].lower == pytest.approx(max(m - half, 0.0), abs=1e-6 * m)


def test_importance_with_zero_tilt_is_plain_counting():
    # θ = 0: every weight is 1 and the likelihood ratio is 1, so the estimate is hits/n exactly.
    est = theory.mc_error_rate(ALPHA, n=3000, key=jax.random.key(5), importance=True, tilt=0.0)
    plain = theory.mc_error_rate(ALPHA, n=3000, key=jax.random.key(5))
    assert est.num_hits == plain.num_hits
    assert est.rate == pytest.approx(plain.rate, rel=1e-12)


# λ_max = 0.6: the strip is θ < 1/(2·0.6) = 0.833; 0.9 and 1.5 are inside (0, 1/λ_max) but not the strip
@pytest.mark.parametrize("tilt", [0.9, 1.5, 10.0, float("inf"), float("nan")])
def test_tilt_outside_the_strip_is_refused(tilt):
    with pytest.raises(ValueError, match="tilt"):
        _importance(0.95, tilt=tilt)


# ------------------------------------------------------------------------ worst-case points


@pytest.mark.parametrize("nest", [True, False])
def test_worst_case_points_from_variables_equals_worst_case_points(nest):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((9, 6)) / np.sqrt(6)
    w, b = 0.7, -1.2
    params = {"W": W, "w": w, "b": b}
    got = theory.worst_case_points_from_variables({"params": params} if nest else params, R=1.7)
    ref = theory.worst_case_points(W, w, b, R=1.7)
    for name in ref._fields:
        # the same computation: equal bits (the eigenvectors' signs included)
        np.testing.assert_array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(ref, name)))
    # and R is passed through: the outer point lies on the sphere of radius 1.7, not 1.3
    assert float(np.linalg.norm(np.asarray(got.outer_x))) == pytest.approx(1.7, rel=1e-12)
    alpha = np.asarray(theory.alphas(W, w, b))
    assert float(got.outer_logit) == pytest.approx(-b * (alpha[0] * 1.7**2 - 1), rel=1e-10)


def test_worst_case_points_from_variables_refuses_other_trees():
    with pytest.raises(ValueError, match="QuadraticNet"):
        theory.worst_case_points_from_variables({"params": {"kernel": np.ones((2, 2))}})
