"""theory.bounds (Theorem 5.1): cap threshold and exact cap distance vs mpmath and Monte Carlo."""

import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy import special

import theory


pytestmark = pytest.mark.usefixtures("float64")


def mp_cap_measure_of_angle(psi_small, d, dps=50):
    """Measure of the cap of angular radius ψ ≤ π/2: ½ I_{sin²ψ}((d−1)/2, ½), in `dps` digits."""
    with mp.workdps(dps):
        if d == 2:
            return mp.mpf(psi_small) / mp.pi
        return mp.betainc(mp.mpf(d - 1) / 2, mp.mpf(1) / 2, 0, mp.sin(mp.mpf(psi_small)) ** 2,
                          regularized=True) / 2


def mp_cap_distance(psi_c, d, dps=30):
    """(1/B(½,(d−1)/2)) ∫₀^{ψ'} 2 sin(v/2) sin^{d−2}(ψ' − v) dv, ψ' = π − ψ, by mpmath tanh-sinh."""
    with mp.workdps(dps):
        pc = mp.mpf(psi_c)
        f = lambda v: 2 * mp.sin(v / 2) * mp.sin(pc - v) ** (d - 2)          # noqa: E731
        pts = [mp.mpf(0), pc]
        if d > 3:
            mode = mp.findroot(lambda v: mp.cot(v / 2) / 2 - (d - 2) * mp.cot(pc - v),
                               (pc * mp.mpf(1e-30), pc * (1 - mp.mpf(1e-30))), solver="anderson")
            w = 1 / mp.sqrt((d - 2) / mp.sin(pc - mode) ** 2 + mp.mpf(0.25) / mp.sin(mode / 2) ** 2)
            pts = sorted({mp.mpf(0), pc} | {min(max(mode + j * w, 0), pc) for j in (-40, -10, -3, 0, 3, 10, 40)})
        return mp.quad(f, pts) / mp.beta(mp.mpf(1) / 2, mp.mpf(d - 1) / 2)


EXTREME_MU = [1e-300, 1e-30, 1e-3, 0.3, 0.5 - 1e-9, 0.7, 1 - 1e-6, 1 - 1e-12]


@pytest.mark.parametrize("d", [2, 3, 10, 500, 10**4, 10**6])
def test_cap_angle_matches_mpmath_measure(d):
    for mu in EXTREME_MU:
        psi = float(theory.cap_angle(mu, d))
        small_side = min(mu, 1 - mu)                       # 1 − mu is exact in float64 here
        psi_small = psi if mu <= 0.5 else math.pi - psi
        if mu > 0.5:                                       # use the accurate complement, not π − ψ
            psi_small = float(theory.cap_angle(small_side, d))
            assert psi == pytest.approx(math.pi - psi_small, abs=4e-16)
        m = mp_cap_measure_of_angle(psi_small, d)
        # backward error: the measure of the returned cap, relative to the requested one.
        # tolerance: ψ is rounded to double (relative 1e-16) and the measure's log-derivative in ψ is
        # up to ~d·cot ψ, so ~1e-12 relative measure error is double-rounding level (observed ≤ 1e-12)
        assert float(m / mp.mpf(small_side) - 1) == pytest.approx(0, abs=5e-12), (d, mu)


def test_cap_threshold_closed_forms_and_symmetry():
    mu = np.array([1e-300, 1e-12, 0.1, 0.25, 0.5, 0.8, 1 - 1e-12])
    # d = 3 (Archimedes): x₁ ~ U[−1, 1], t = 1 − 2μ; d = 2: t = cos(πμ). Tolerance: float64 rounding
    np.testing.assert_allclose(theory.cap_threshold(mu, 3), 1 - 2 * mu, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(theory.cap_threshold(mu, 2), np.cos(np.pi * mu), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(theory.cap_angle(1e-300, 3), 2 * math.sqrt(1e-300), rtol=1e-13)
    big = 1 - mu[:4]                                   # 1 − big is exact (Sterbenz), 1 − mu is not
    np.testing.assert_allclose(theory.cap_threshold(big, 57), -theory.cap_threshold(1 - big, 57),
                               rtol=1e-13, atol=1e-16)


def test_cap_functions_broadcast_and_validate():
    mu = np.array([[1e-3], [0.2]])
    d = np.array([3, 10, 100])
    assert theory.cap_threshold(mu, d).shape == (2, 3)
    assert theory.cap_distance_bound(mu, d).shape == (2, 3)
    assert np.ndim(theory.cap_distance_bound(0.1, 10)) == 0
    for bad in [(-0.1, 10), (1.1, 10), (0.1, 1), (0.1, 2.5), (np.nan, 10)]:
        with pytest.raises(ValueError):
            theory.cap_distance_bound(*bad)


@pytest.mark.parametrize("d", [2, 10, 500, 10**4, 10**6])
def test_cap_distance_matches_mpmath(d):
    for mu in [1e-300, 1e-30, 0.3, 0.7, 1 - 1e-12]:
        got = float(theory.cap_distance_bound(mu, d))
        psi_c = math.pi - float(theory.cap_angle(mu, d)) if mu <= 0.5 else float(theory.cap_angle(1 - mu, d))
        ref = mp_cap_distance(psi_c, d)
        # tolerance: quad's epsrel is 1e-12; observed ≤ 1e-13 for d ≤ 1e4, ~1e-11 at d = 1e6 (where
        # the 30-digit reference quadrature of a peak of width 1e-3 is the less accurate side)
        tol = 1e-9 if d >= 10**6 else 1e-11
        assert float(mp.mpf(got) / ref - 1) == pytest.approx(0, abs=tol), (d, mu)


def test_cap_distance_known_values():
    # a cap of measure → 0 is a point: mean chord to a fixed point is 4/π on the circle, 4/3 on S²
    # tolerance: float64 rounding
    assert float(theory.cap_distance_bound(1e-300, 2)) == pytest.approx(4 / math.pi, rel=1e-13)
    assert float(theory.cap_distance_bound(1e-300, 3)) == pytest.approx(4 / 3, rel=1e-13)
    assert float(theory.cap_distance_bound(1.0, 50)) == 0.0
    mus = np.logspace(-12, -0.01, 25)
    assert np.all(np.diff(theory.cap_distance_bound(mus, 100)) < 0)   # larger caps are closer


def _mc_cap_distances(mu, d, n, key):
    """Distances from uniform points of S^{d−1} to the explicit cap {x₁ ≥ t}, by constructing the
    nearest cap point y = t e₁ + √(1−t²) x⊥/‖x⊥‖ (independent of the 2 sin(Δφ/2) formula)."""
    t = float(theory.cap_threshold(mu, d))
    x = jax.random.normal(key, (n, d))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
    perp = x.at[:, 0].set(0.0)
    perp = perp / jnp.linalg.norm(perp, axis=1, keepdims=True)
    y = math.sqrt(1 - t * t) * perp
    y = y.at[:, 0].set(t)
    inside = x[:, 0] >= t
    return np.asarray(jnp.where(inside, 0.0, jnp.linalg.norm(x - y, axis=1))), np.asarray(inside)


@pytest.mark.parametrize("d", [3, 10, 50])
def test_cap_distance_matches_monte_carlo(d):
    n = 100_000
    for i, mu in enumerate([0.01, 0.2, 0.5, 0.8]):
        dist, inside = _mc_cap_distances(mu, d, n, jax.random.key(10 * d + i))
        se = dist.std(ddof=1) / math.sqrt(n)
        # tolerance: 4.5 standard errors of the MC mean (two-sided p ≈ 7e-6 per check)
        assert abs(dist.mean() - theory.cap_distance_bound(mu, d)) < 4.5 * se, (d, mu)
        # and the cap really has measure mu (4.5 binomial standard errors)
        assert abs(inside.mean() - mu) < 4.5 * math.sqrt(mu * (1 - mu) / n)


def test_threshold_converges_to_the_asymptotic_form_at_rate_one_over_d():
    # √d·t(μ, d) → Φ⁻¹(1 − μ); the error falls like 1/d (observed: d·error → const within a few %).
    for mu in [1e-6, 0.01, 0.2]:
        a = -special.ndtri(mu)
        ds = np.array([10**3, 10**4, 10**5])
        err = np.sqrt(ds) * theory.cap_threshold(mu, ds) - a
        scaled = ds * err
        # tolerance: 1/d rate ⇒ d·err constant; allow 10% drift between decades
        assert np.all(np.abs(scaled / scaled[-1] - 1) < 0.1), (mu, scaled)
        np.testing.assert_allclose(np.asarray(theory.asymptotic_distance_bound(mu, ds)) * np.sqrt(ds), a,
                                   rtol=1e-13)


def test_asymptotic_cap_distance_at_full_measure_is_zero():
    # mu = 1: a = Φ⁻¹(0) = -inf and a·Φ(a) is -inf·0 (it was NaN); the cap is the whole sphere
    np.testing.assert_array_equal(np.asarray(theory.asymptotic_cap_distance(np.array([1.0, 1 - 1e-17]), 500)), 0.0)
    near = float(theory.asymptotic_cap_distance(1 - 1e-12, 500))
    # continuous at 1: tiny and positive, next to the exact cap distance (1.2e-14 vs 1.4e-14)
    assert 0 < near < 1e-13 and 0 < theory.cap_distance_bound(1 - 1e-12, 500) < 1e-13


def test_exact_cap_distance_converges_to_its_limit_not_to_the_papers_form():
    # √d·d(cap) → aΦ(a) + φ(a) (asymptotic_cap_distance), a = Φ⁻¹(1 − μ), with relative error O(1/d)
    # (observed: ×10 smaller per decade of d; the constant grows like a², e.g. 2.2 at μ = 1e-6,
    # ~170 at μ = 1e-300). The paper's Φ⁻¹(1 − μ)/√d is smaller than that limit by the factor
    # a/(aΦ(a) + φ(a)): 0.99855 at μ = 0.01, 0.883 at μ = 0.2, 0 at μ = ½ — it is the cap *height*.
    ds = np.array([10**3, 10**4, 10**5])
    for mu in [1e-6, 0.01, 0.2, 0.5]:
        exact = theory.cap_distance_bound(mu, ds)
        limit = np.asarray(theory.asymptotic_cap_distance(mu, ds))
        rel = exact / limit - 1
        # tolerance: an O(1/d) rate ⇒ each decade shrinks the gap ~10× (accept 7–13×)
        assert np.all((rel[:-1] / rel[1:] > 7) & (rel[:-1] / rel[1:] < 13)), (mu, rel)
        assert abs(rel[-1]) < 1e-3
    for mu in [0.01, 0.2]:
        a = -special.ndtri(mu)
        factor = (a * special.ndtr(a) + math.exp(-a * a / 2) / math.sqrt(2 * math.pi)) / a
        ratio = theory.cap_distance_bound(mu, 10**5) / float(theory.asymptotic_distance_bound(mu, 10**5))
        # tolerance: the O(1/d) remainder at d = 1e5 (observed ≤ 5e-6)
        assert ratio == pytest.approx(factor, rel=1e-4)
    # for small μ the paper's form is the leading term: μ = 1e-6, d = 1e5 agree to 1e-4
    ratio = theory.cap_distance_bound(1e-6, 10**5) / float(theory.asymptotic_distance_bound(1e-6, 10**5))
    assert ratio == pytest.approx(1.0, abs=1e-4)


def test_asymptotic_bound_is_jittable_and_accurate_at_extremes():
    f = jax.jit(theory.asymptotic_distance_bound)
    # tolerance: ndtri is accurate to ~1e-15 relative; −Φ⁻¹(1e-300) ≈ 37.04
    assert float(f(1e-300, 1.0)) == pytest.approx(-special.ndtri(1e-300), rel=1e-13)
    mu = 1 - 1e-12                                     # 1 − mu is exact in float64
    assert float(f(mu, 4.0)) == pytest.approx(special.ndtri(1 - mu) / 2, rel=1e-13)
    assert float(f(0.5, 9.0)) == 0.0
    assert jnp.isfinite(jax.grad(theory.asymptotic_distance_bound)(0.01, 100.0))


@pytest.mark.slow
@pytest.mark.parametrize("d", [200, 500])
def test_slow_cap_distance_matches_monte_carlo_high_d(d):
    n = 400_000
    for i, mu in enumerate([1e-3, 0.05, 0.5]):
        dist, _ = _mc_cap_distances(mu, d, n, jax.random.key(1000 * d + i))
        se = dist.std(ddof=1) / math.sqrt(n)
        # tolerance: 4.5 standard errors of the MC mean
        assert abs(dist.mean() - theory.cap_distance_bound(mu, d)) < 4.5 * se, (d, mu)


# --- added for docs/mutation.md (issue 26): endpoints, validation and log B(½, a) to full precision ---

@pytest.mark.parametrize("d", [2, 3, 57])
def test_cap_functions_at_measure_zero_and_one(d):
    # μ = 0: the cap is the pole (t = 1, ψ = 0) and the mean distance is the mean chord to a point;
    # μ = 1: the whole sphere (t = −1, ψ = π), distance 0. Exact, except the chord mean
    assert float(theory.cap_threshold(0.0, d)) == 1.0 and float(theory.cap_angle(0.0, d)) == 0.0
    assert float(theory.cap_threshold(1.0, d)) == -1.0 and float(theory.cap_angle(1.0, d)) == math.pi
    assert float(theory.cap_distance_bound(1.0, d)) == 0.0
    # ½ is the hemisphere: t = 0 and ψ = π/2 from both sides of the μ = ½ switch
    assert float(theory.cap_angle(0.5, d)) == pytest.approx(math.pi / 2, rel=1e-15)
    assert abs(float(theory.cap_threshold(0.5, d))) < 1e-16
    # mean chord from a uniform point of S^{d−1} to a fixed point: E‖x − e‖ = E√(2 − 2x₁), by mpmath
    # quadrature of the x₁ density (1 − s²)^{(d−3)/2} / B(½, (d−1)/2); tolerance: quad rtol 1e-12
    with mp.workdps(30):
        dens = lambda s: (1 - s * s) ** (mp.mpf(d - 3) / 2) / mp.beta(mp.mpf(1) / 2, mp.mpf(d - 1) / 2)  # noqa: E731
        ref = mp.quad(lambda s: mp.sqrt(2 - 2 * s) * dens(s), [-1, 0, 1])
    assert float(theory.cap_distance_bound(0.0, d)) == pytest.approx(float(ref), rel=1e-11)


def test_cap_functions_reject_non_finite_or_out_of_range_inputs():
    for bad in [(0.1, np.inf), (0.1, np.nan), (0.1, -4), (-1e-300, 10), (1 + 1e-15, 10), (np.inf, 10)]:
        for f in (theory.cap_threshold, theory.cap_angle, theory.cap_distance_bound):
            with pytest.raises(ValueError):
                f(*bad)
    for bad in [-1e-300, 1 + 1e-15, np.nan]:
        with pytest.raises(ValueError):
            theory.asymptotic_distance_bound(bad, 10)
        with pytest.raises(ValueError):
            theory.asymptotic_cap_distance(bad, 10)
    # the boundary values are accepted: d = 2 (the circle) and μ ∈ {0, 1}
    assert np.shape(theory.cap_distance_bound(np.array([0.0, 1.0]), 2)) == (2,)


def test_log_beta_half_to_double_precision():
    # log B(½, a) against 40-digit mpmath on both sides of the a = 15 switch to the Stirling series.
    # tolerance: observed ≤ 4.3e-16 relative for the series (a >= 15) and ≤ 4.1e-15 for the
    # gammaln difference (a < 15); each series coefficient changed in its last kept digit moves the
    # result at a = 15 by more than 1e-15 relative
    from theory import bounds
    for a in [0.5, 1.0, 2.5, 14.5, 14.999, 15.0, 15.5, 20.0, 31.0, 100.0, 1e3, 1e6, 1e9]:
        with mp.workdps(40):
            ref = mp.log(mp.beta(mp.mpf(1) / 2, mp.mpf(a)))
        rel = float((mp.mpf(bounds._log_beta_half(a)) - ref) / ref)
        assert abs(rel) < (1e-15 if a >= 15 else 1e-14), (a, rel)


def test_scalar_inputs_give_numpy_scalars_and_arrays_stay_arrays():
    # scalars in, a NumPy float64 scalar out (a `float`, usable in f-strings and math.*), not a 0-d array
    for f in (theory.cap_threshold, theory.cap_angle, theory.cap_distance_bound):
        out = f(0.1, 10)
        assert isinstance(out, float) and isinstance(out, np.float64), (f, type(out))
        arr = f(np.array([0.1, 0.2]), 10)
        assert isinstance(arr, np.ndarray) and arr.shape == (2,)
