"""theory.error_rate: exact tail probability vs closed forms, 50+-digit mpmath, Monte Carlo; CLT."""

import math
import warnings

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy import special, stats

import theory
from theory import error_rate as er

R = 1.3


pytestmark = pytest.mark.usefixtures("float64")


def imhof_mp(lam, dps):
    """P[Σ λᵢ gᵢ² > 0] by Imhof's integral in `dps`-digit arithmetic (independent of the contour code).

    P = ½ + (1/π) ∫₀^∞ sin θ(u) / (u ρ(u)) du, θ = ½ Σ atan(λᵢu), ρ = Π (1 + λᵢ²u²)^{1/4} (Imhof 1961).
    In double precision this cancels catastrophically in the tail; with dps = 40 + |log10 P| it does not.
    """
    vals, cnt = np.unique(np.asarray(lam, dtype=float), return_counts=True)
    with mp.workdps(dps):
        V = [mp.mpf(float(v)) for v in vals]
        C = [int(c) for c in cnt]

        def f(u):
            if u == 0:
                return sum(c * v for v, c in zip(V, C)) / 2
            th = sum(c * mp.atan(v * u) for v, c in zip(V, C)) / 2
            lr = sum(c * mp.log1p((v * u) ** 2) for v, c in zip(V, C)) / 4
            return mp.sin(th) * mp.exp(-lr) / u

        return mp.mpf(0.5) + mp.quad(f, [0, 0.1, 1, 10, 100, 1000, mp.inf]) / mp.pi


# ---------------------------------------------------------------- exact: trivial and closed forms


def test_exact_is_zero_for_a_perfect_model_and_one_when_every_coefficient_is_bad():
    alpha = np.linspace(1 / R**2, 1.0, 500)                     # perfect: every α in [1/R², 1]
    assert theory.exact_error_rate(alpha, sphere="inner") == 0.0
    assert theory.exact_error_rate(alpha, sphere="outer", R=R) == 0.0
    assert theory.exact_error_rate(alpha, sphere="inner", log=True) == -math.inf
    assert theory.exact_error_rate(np.full(10, 1.5)) == 1.0     # every λ = α − 1 > 0
    assert theory.exact_error_rate(np.full(10, 0.1), sphere="outer") == 1.0
    # zeros contribute nothing: λ = (0, 0, 0.5) is positive a.s.; λ ≡ 0 is never > 0
    assert theory.quadratic_form_positive_probability([0.0, 0.0, 0.5]) == 1.0
    assert theory.quadratic_form_positive_probability([0.0, 0.0]) == 0.0
    assert theory.quadratic_form_positive_probability([0.0, -1.0]) == 0.0


@pytest.mark.parametrize("a", [1.0, 4.0, 1e-4, 1e4, 1e12, 1e-12])
def test_exact_two_coefficients_closed_form(a):
    # P[z₁² > a z₂²] = P[|Cauchy| > √a] = (2/π) atan(1/√a); tolerance: float64 rounding (observed ~1e-15).
    # At a = 1 and 4 (P = 0.5, 0.30) both sides are integrated and must sum to 1 without the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = theory.quadratic_form_positive_probability([1.0, -a])
    assert p == pytest.approx(2 / math.pi * math.atan(1 / math.sqrt(a)), rel=1e-12)


@pytest.mark.parametrize("k,d,l1,l2", [(1, 500, 0.5, -0.01), (250, 500, 0.02, -0.05),
                                       (10, 500, 0.1, -0.05), (5, 500, 0.3, -0.3),
                                       (400, 500, 0.01, -0.3), (1, 3, 1.0, -2.0)])
def test_exact_two_valued_matches_incomplete_beta(k, d, l1, l2):
    # λ₁χ²_k > |λ₂|χ²_{d−k}  ⟺  Beta(k/2,(d−k)/2) > |λ₂|/(λ₁+|λ₂|); reference: scipy's betainc
    lam = np.r_[np.full(k, l1), np.full(d - k, l2)]
    ref = special.betainc((d - k) / 2, k / 2, l1 / (l1 - l2))
    # tolerance: both sides are ~1e-14 accurate (observed 3e-14 at 1e-72)
    assert theory.quadratic_form_positive_probability(lam) == pytest.approx(ref, rel=1e-11)


# ---------------------------------------------------------------- exact: the tail vs high precision


def _tail_pattern(a):
    """Three distinct positive/negative values, 55 coordinates; `a` sets how far in the tail."""
    return np.r_[np.full(2, a), np.full(3, a / 2), np.full(30, -0.3), np.full(20, -0.1)]


@pytest.mark.parametrize("a,decade", [(0.126, -10), (0.0126, -30), (0.000742, -60)])
def test_exact_tail_matches_mpmath_imhof(a, decade):
    lam = _tail_pattern(a)
    log_p = theory.quadratic_form_positive_probability(lam, log=True)
    assert abs(log_p / math.log(10) - decade) < 0.5            # the pattern is where it should be
    ref = imhof_mp(lam, dps=int(45 - decade))
    # tolerance: the issue requires 1e-6 relative; observed agreement ~3e-14
    assert float(mp.exp(log_p) / ref - 1) == pytest.approx(0.0, abs=1e-10)


def test_exact_random_coefficients_match_mpmath_imhof():
    rng = np.random.default_rng(0)
    lam = np.r_[rng.uniform(0.05, 0.3, 3), rng.uniform(-1, -0.1, 12)]
    p = theory.quadratic_form_positive_probability(lam)
    # tolerance: observed ~1e-15; 1e-10 leaves room for platform libm differences
    assert float(mp.mpf(p) / imhof_mp(lam, dps=40) - 1) == pytest.approx(0.0, abs=1e-10)


def test_exact_far_tail_in_log_space_matches_mpmath_beta():
    # P ≈ 1e-373.5: only the log form is representable. Two-valued ⇒ exact via mpmath's betainc.
    k, d, l1, l2 = 1, 500, 0.01, -0.3
    lam = np.r_[np.full(k, l1), np.full(d - k, l2)]
    log_p = theory.quadratic_form_positive_probability(lam, log=True)
    with mp.workdps(40):
        ref = mp.log(mp.betainc(mp.mpf(d - k) / 2, mp.mpf(k) / 2, 0, mp.mpf(l1) / (mp.mpf(l1) - mp.mpf(l2)),
                                regularized=True))
    assert log_p < math.log(1e-308)                                # below the float64 range
    # tolerance: absolute 1e-9 in log P = relative 1e-9 in P
    assert log_p == pytest.approx(float(ref), abs=1e-9)


def test_exact_both_sides_relative_accurate():
    # P[Q > 0] ≈ 1 − 1e-30: its complement P[Q < 0] = P[−Q > 0] must come out relative-accurate
    lam = -_tail_pattern(0.0126)
    log_big = theory.quadratic_form_positive_probability(lam, log=True)
    small = theory.quadratic_form_positive_probability(-lam)
    assert small < 1e-29
    # tolerance: −expm1(log P) recovers 1 − P from log P ≈ −1e-30 with ~1e-15 relative error
    assert -math.expm1(log_big) == pytest.approx(small, rel=1e-12)
    # and P[Q>0] + P[Q<0] = 1 to rounding for a moderate case
    lam2 = np.r_[np.full(7, 0.2), np.full(40, -0.05), 0.7]
    assert (theory.quadratic_form_positive_probability(lam2)
            + theory.quadratic_form_positive_probability(-lam2)) == pytest.approx(1.0, abs=1e-14)


def test_exact_log_is_keyword_only():
    # a positional True would silently switch the result to log space
    with pytest.raises(TypeError):
        theory.quadratic_form_positive_probability([1.0, -4.0], True)
    assert theory.quadratic_form_positive_probability([1.0, -4.0], log=True) == pytest.approx(
        math.log(2 / math.pi * math.atan(0.5)), rel=1e-12)


def test_exact_is_scale_invariant_and_vectorised():
    lam = _tail_pattern(0.05)
    p = theory.quadratic_form_positive_probability(lam)
    batch = np.stack([lam, 1e-5 * lam, 1e5 * lam])
    # tolerance: rounding only (the computation normalises λ by max |λ|)
    np.testing.assert_allclose(theory.quadratic_form_positive_probability(batch), p, rtol=1e-13)
    alpha = np.stack([np.r_[np.full(10, 1.2), np.full(40, 0.9)]] * 2).reshape(2, 1, 50)
    assert theory.exact_error_rate(alpha).shape == (2, 1)


def test_exact_outer_sphere_is_the_flipped_event():
    # outer error ⟺ Σ(αR² − 1) g² < 0 ⟺ P[Σ(1 − αR²) g² > 0]
    alpha = np.r_[np.full(20, 0.55), np.full(30, 0.7)]
    p_out = theory.exact_error_rate(alpha, sphere="outer", R=R)
    p_ref = theory.quadratic_form_positive_probability(1 - alpha * R**2)
    assert p_out == p_ref
    assert 0 < p_out < 1
    # the inner rate of the same α is 0 (every α < 1)
    assert theory.exact_error_rate(alpha, sphere="inner") == 0.0


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan]), np.array([np.inf, 0.5]), np.float64(1.2)])
def test_exact_validates_inputs(bad):
    with pytest.raises(ValueError):
        theory.exact_error_rate(bad)


def test_sphere_and_radius_are_validated():
    with pytest.raises(ValueError):
        theory.exact_error_rate(np.ones(3), sphere="middle")
    with pytest.raises(ValueError):
        theory.exact_error_rate(np.ones(3), sphere="outer", R=1.0)
    with pytest.raises(ValueError):
        theory.clt_error_rate(np.ones(3), R=0.5)


# ---------------------------------------------------------------- exact vs Monte Carlo at d = 500

_RNG = np.random.default_rng(0)
MC_PATTERNS = {
    "inner_half": (np.r_[np.full(250, 0.95), np.full(250, 1.06)], "inner"),
    "inner_few_big": (np.r_[np.full(5, 8.0), np.full(495, 0.9)], "inner"),
    "inner_many_mild": (1 + 0.05 * _RNG.standard_normal(500) - 0.004, "inner"),
    "outer_uniform": (_RNG.uniform(0.5, 0.7, 500), "outer"),
}


@pytest.mark.parametrize("name", sorted(MC_PATTERNS))
def test_exact_within_monte_carlo_interval_d500(name):
    alpha, sphere = MC_PATTERNS[name]
    exact = theory.exact_error_rate(alpha, sphere=sphere, R=R)
    assert 1e-3 < exact < 0.99                                   # a moderate rate MC can see
    est = theory.mc_error_rate(alpha, sphere=sphere, R=R, n=40_000, key=jax.random.key(1),
                               confidence=0.999)
    # tolerance: the 99.9% Clopper–Pearson interval of 40,000 samples on the sphere
    assert est.lower <= exact <= est.upper, (est, exact)
    assert est.method == "plain" and est.num_samples == 40_000


def test_importance_sampling_matches_exact_far_below_one_over_n():
    rng = np.random.default_rng(3)
    alpha = rng.uniform(0.9, 1.05, 500)
    exact = theory.exact_error_rate(alpha, log=True)
    assert exact < math.log(1e-20)                               # ~4e-23: far below 1/n
    est = theory.mc_error_rate(alpha, n=20_000, key=jax.random.key(2), importance=True, confidence=0.999)
    # tolerance: the 99.9% CLT interval of the weighted mean (its half-width is ~9% here)
    assert est.lower <= math.exp(exact) <= est.upper, (est, math.exp(exact))
    assert abs(est.log_rate - exact) < 0.1
    assert est.num_hits > 1000                                   # the tilt puts ~half the draws in the event


def test_importance_sampling_outer_sphere():
    alpha = np.r_[np.full(100, 0.5), np.full(400, 0.65)]           # exact outer rate ~6e-11
    exact = theory.exact_error_rate(alpha, sphere="outer", R=R)
    est = theory.mc_error_rate(alpha, sphere="outer", R=R, n=20_000, key=jax.random.key(4),
                               importance=True, confidence=0.999)
    # tolerance: the 99.9% CLT interval
    assert est.lower <= exact <= est.upper, (est, exact)


def test_importance_tilt_solves_the_saddlepoint_equation():
    lam = np.r_[np.full(3, 0.2), np.full(50, -0.1)]
    theta = theory.importance_tilt(lam)
    # K'(θ) = Σ λ/(1 − 2λθ) = 0; tolerance: brentq's xtol
    assert abs(np.sum(lam / (1 - 2 * lam * theta))) < 1e-8
    assert theory.importance_tilt(np.r_[1.0, -0.1]) == 0.0        # E Q >= 0: not a rare event


@pytest.mark.parametrize("l1,l2", [(0.1, -0.2), (0.3, -0.35), (2.0, -5.0)])
def test_importance_tilt_two_coefficients_closed_form(l1, l2):
    # K'(θ) = λ₁/(1 − 2λ₁θ) + λ₂/(1 − 2λ₂θ) = 0  ⇔  θ = (λ₁ + λ₂)/(4 λ₁ λ₂); E Q = λ₁ + λ₂ ranges
    # from −0.05 to −3 (a small |E Q| keeps K' above −1 over the whole search); tolerance: brentq's xtol
    assert theory.importance_tilt(np.r_[l1, l2]) == pytest.approx((l1 + l2) / (4 * l1 * l2), rel=1e-10)


def test_mc_masks_the_last_chunk_and_does_not_recompile():
    alpha = np.full(50, 2.0)                                     # every inner point is an error
    est = theory.mc_error_rate(alpha, n=1001, key=jax.random.key(0), chunk_size=256)
    assert est.num_hits == 1001 and est.rate == 1.0
    size = er._mc_block._cache_size()
    theory.mc_error_rate(alpha * 1.1, n=777, key=jax.random.key(5), chunk_size=256)
    assert er._mc_block._cache_size() == size
    none = theory.mc_error_rate(np.full(50, 0.9), n=500, key=jax.random.key(0))
    assert none.num_hits == 0 and none.lower == 0.0 and 0 < none.upper < 0.01


def test_mc_is_deterministic_for_a_key_and_validates():
    alpha = np.r_[np.full(5, 8.0), np.full(45, 0.9)]
    a = theory.mc_error_rate(alpha, n=3000, key=jax.random.key(7))
    b = theory.mc_error_rate(alpha, n=3000, key=jax.random.key(7))
    assert a == b
    with pytest.raises(ValueError):
        theory.mc_error_rate(alpha, n=0, key=jax.random.key(7))
    with pytest.raises(ValueError):
        theory.mc_error_rate(alpha[None], n=10, key=jax.random.key(7))


# ---------------------------------------------------------------- CLT


@pytest.mark.parametrize("alpha", [[1.1, 0.95, 0.95, 0.95], [1.02, 0.99], [0.7, 1.3, 1.0]])
def test_clt_with_a_small_spread_is_the_normal_cdf(alpha):
    # σ = √(2 Σ λ²) well below 1 (0.19, 0.03, 0.6): P ≈ Φ(μ/σ) with λ = α − 1, against SciPy
    lam = np.asarray(alpha) - 1.0
    mu, sigma = lam.sum(), math.sqrt(2 * np.sum(lam**2))
    assert sigma < 1
    assert float(theory.clt_error_rate(jnp.asarray(alpha))) == pytest.approx(stats.norm.cdf(mu / sigma), rel=1e-12)


def test_clt_formula_and_signs():
    alpha = np.r_[np.full(250, 0.95), np.full(250, 1.06)]
    lam = alpha - 1
    ref = special.ndtr(lam.sum() / math.sqrt(2 * np.sum(lam**2)))     # Φ(μ/σ) = 1 − Φ(−μ/σ)
    assert float(theory.clt_error_rate(alpha)) == pytest.approx(ref, rel=1e-13)
    lam_o = alpha * R**2 - 1
    ref_o = special.ndtr(-lam_o.sum() / math.sqrt(2 * np.sum(lam_o**2)))  # Φ(−μ'/σ')
    assert float(theory.clt_error_rate(alpha, sphere="outer", R=R)) == pytest.approx(ref_o, rel=1e-13)
    assert float(theory.clt_error_rate(np.ones(4))) == 0.0           # λ ≡ 0: no error


def test_clt_agrees_with_exact_for_many_mildly_bad_alphas():
    # Many comparable λ and a moderate rate: the CLT's regime. Tolerance: absolute 0.01 (Berry–Esseen
    # error is O(1/√d) in absolute probability; observed 3e-4 to 1e-3 here).
    for name in ("inner_half", "inner_many_mild", "outer_uniform"):
        alpha, sphere = MC_PATTERNS[name]
        exact = theory.exact_error_rate(alpha, sphere=sphere, R=R)
        clt = float(theory.clt_error_rate(alpha, sphere=sphere, R=R))
        assert abs(clt - exact) < 0.01, (name, clt, exact)


def _two_valued_log_p(k, lam1, d, lam2, dps=40):
    """log P[λ₁ χ²_k + λ₂ χ²_{d−k} > 0] (λ₁ > 0 > λ₂) by mpmath's regularised incomplete beta:
    χ²_k / (χ²_k + χ²_{d−k}) ~ Beta(k/2, (d−k)/2), so P = I_{λ₁/(λ₁−λ₂)}((d−k)/2, k/2)."""
    with mp.workdps(dps):
        l1, l2 = mp.mpf(lam1), mp.mpf(lam2)
        return float(mp.log(mp.betainc(mp.mpf(d - k) / 2, mp.mpf(k) / 2, 0, l1 / (l1 - l2), regularized=True)))


def _clt_log_p(alpha):
    """log Φ(μ/σ), μ = Σ(α − 1), σ² = 2Σ(α − 1)² (Gilmer Prop. 4.1), by scipy's log_ndtr."""
    lam = np.asarray(alpha, float) - 1
    return float(special.log_ndtr(lam.sum() / math.sqrt(2 * np.sum(lam**2))))


@pytest.mark.parametrize("k,a1,a2,exact_decades,gap_range", [
    (5, 2.0, 0.8, -17.28, (-30, -20)),     # a few strongly bad α: CLT −40.2 decades, 22.9 too small
    (1, 5.0, 0.9, -3.35, (-10, -8)),       # one bad α at a moderate rate: CLT −12.2, 8.8 too small
    (250, 1.02, 0.95, -12.25, (2.5, 3)),   # mildly bad half: CLT −9.6, 2.6 decades too large
])
def test_clt_is_far_off_in_the_tails_document_how_far(k, a1, a2, exact_decades, gap_range):
    # d = 500 with two values of α: the exact tail has a closed form (incomplete beta, 40 digits),
    # so the code's contour integral is checked against it, and the CLT against its formula.
    alpha = np.r_[np.full(k, a1), np.full(500 - k, a2)]
    ref = _two_valued_log_p(k, a1 - 1, 500, a2 - 1)
    exact = theory.exact_error_rate(alpha, log=True)
    # tolerance: 1e-9 absolute in log P = 1e-9 relative in P (the contour code's documented accuracy)
    assert exact == pytest.approx(ref, abs=1e-9)
    # the documented decades in the module and README (2 decimals of log10 P)
    assert ref / math.log(10) == pytest.approx(exact_decades, abs=0.005)
    clt = float(theory.clt_error_rate(alpha, log=True))
    assert clt == pytest.approx(_clt_log_p(alpha), rel=1e-12)      # same formula, float64 rounding
    # the CLT's error in decades (log10 P_clt − log10 P_exact), both sides computed independently
    assert gap_range[0] < (clt - exact) / math.log(10) < gap_range[1]


def test_clt_jit_vmap_grad():
    alpha = jnp.asarray(np.r_[np.full(20, 1.1), np.full(30, 0.9)])
    f = lambda a: theory.clt_error_rate(a, log=True)               # noqa: E731
    direct = f(alpha)
    assert jax.jit(f)(alpha) == pytest.approx(float(direct), rel=1e-14)   # tolerance: same ops, jit fusion
    batched = jax.vmap(f)(jnp.stack([alpha, alpha * 0.9]))
    assert batched[0] == pytest.approx(float(direct), rel=1e-14)
    g = jax.grad(f)(alpha)
    assert jnp.all(jnp.isfinite(g)) and float(g[0]) > 0            # more α > 1 → more errors


# ---------------------------------------------------------------- heavier checks (pytest -m slow)


@pytest.mark.slow
@pytest.mark.parametrize("target", [1e-100, 1e-300])
def test_slow_exact_deep_tail_d500_matches_mpmath_imhof(target):
    # d = 500 with ten distinct values (multiplicities 50); the positive scale is tuned to the target
    from scipy import optimize
    neg = np.repeat(-np.linspace(0.05, 0.4, 8), 50)

    def lam(a):
        return np.r_[np.full(50, a), np.full(50, a / 3), neg]

    a = optimize.brentq(lambda a: theory.quadratic_form_positive_probability(lam(a), log=True)
                        - math.log(target), 1e-9, 0.49)
    a = float(f"{a:.4g}")
    log_p = theory.quadratic_form_positive_probability(lam(a), log=True)
    ref = imhof_mp(lam(a), dps=int(50 - log_p / math.log(10)))
    # tolerance: the 1e-6 relative; observed ~1e-13
    assert float(mp.exp(log_p) / ref - 1) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MC_PATTERNS))
def test_slow_exact_within_large_monte_carlo_interval(name):
    alpha, sphere = MC_PATTERNS[name]
    exact = theory.exact_error_rate(alpha, sphere=sphere, R=R)
    est = theory.mc_error_rate(alpha, sphere=sphere, R=R, n=2_000_000, key=jax.random.key(11),
                               confidence=0.999)
    # tolerance: the 99.9% Clopper–Pearson interval of 2·10⁶ samples
    assert est.lower <= exact <= est.upper, (est, exact)


@pytest.mark.slow
def test_slow_importance_sampling_at_1e_minus_160():
    rng = np.random.default_rng(3)
    alpha = rng.uniform(0.9, 1.01, 500)
    exact = theory.exact_error_rate(alpha, log=True)
    est = theory.mc_error_rate(alpha, n=400_000, key=jax.random.key(12), importance=True, confidence=0.999)
    # tolerance: the 99.9% CLT interval of the weighted mean
    assert est.lower <= math.exp(exact) <= est.upper, (est, math.exp(exact))
