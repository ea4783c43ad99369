"""theory.threshold: the paper's threshold model Σ_{i≤k} zᵢ² ≷ b — its exact (Beta) and CLT rates, the
optimal threshold, the required fraction k/d — and theory.simplified_optimal's figure/table data."""

import math

import mpmath as mp
import numpy as np
import pytest
from scipy import special, stats

import theory
from theory.simplified_optimal import (PAPER_TARGETS, format_half_input_table, format_interpretations,
                                       half_input_table, paper_example_interpretations,
                                       required_fraction_curves)

R = 1.3
LN10 = math.log(10.0)
pytestmark = pytest.mark.usefixtures("float64")      # the JAX CLT is compared in double precision

METHOD_CRITERION = [(m, c) for m in ("clt", "exact") for c in ("max", "sum")]


def log10_rates(k, d, b, method):
    return (theory.threshold_error_rate(k, d, b, sphere="inner", R=R, method=method, log=True) / LN10,
            theory.threshold_error_rate(k, d, b, sphere="outer", R=R, method=method, log=True) / LN10)


def objective(log10_in, log10_out, criterion):
    if criterion == "max":
        return np.maximum(log10_in, log10_out)
    return np.logaddexp(log10_in * LN10, log10_out * LN10) / LN10


# --------------------------------------------------------------------------------------------------
# The rates themselves
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,d,b", [(3, 10, 0.4), (50, 100, 0.62), (1, 500, 0.004), (400, 500, 0.9),
                                   (1500, 3000, 0.58), (999, 1000, 0.995)])
def test_exact_rate_is_the_beta_tail(k, d, b):
    """inner = P[Beta(k/2, (d−k)/2) > b], outer = P[Beta < b/R²], against scipy.stats.beta."""
    got_in = theory.threshold_error_rate(k, d, b, sphere="inner", R=R)
    got_out = theory.threshold_error_rate(k, d, b, sphere="outer", R=R)
    ref_in = stats.beta.sf(b, k / 2, (d - k) / 2)
    ref_out = stats.beta.cdf(b / R**2, k / 2, (d - k) / 2)
    assert ref_in > 1e-290 and ref_out > 1e-290            # inside scipy's float range
    # tolerance: relative 1e-10 — both sides are float64 incomplete-beta evaluations (~1e-13 apart),
    # with a margin for betaln's rounding at d = 3000
    assert got_in == pytest.approx(ref_in, rel=1e-10)
    assert got_out == pytest.approx(ref_out, rel=1e-10)
    assert got_in != pytest.approx(got_out, rel=1e-3)      # the two spheres are different events


@pytest.mark.parametrize("k,d,b", [(1500, 3000, 0.62825), (5000, 10000, 0.62825), (100, 10000, 0.05),
                                   (9990, 10000, 1 - 1e-12), (10, 1000, 0.3)])
def test_exact_rate_far_tail_matches_mpmath(k, d, b):
    """Tails from 1e-24 down to 1e-1000 and below, against 50-digit mpmath."""
    with mp.workdps(50):
        a, c, bb = mp.mpf(k) / 2, mp.mpf(d - k) / 2, mp.mpf(b)
        # P[B > b] = P[1 − B < 1 − b], 1 − B ~ Beta((d−k)/2, k/2): a lower tail, free of cancellation
        ref_in = float(mp.log(mp.betainc(c, a, 0, 1 - bb, regularized=True)))
        ref_out = float(mp.log(mp.betainc(a, c, 0, bb / mp.mpf(R) ** 2, regularized=True)))
    got_in = float(theory.threshold_error_rate(k, d, b, sphere="inner", R=R, log=True))
    got_out = float(theory.threshold_error_rate(k, d, b, sphere="outer", R=R, log=True))
    assert min(ref_in, ref_out) < math.log(1e-20)           # a genuine tail
    # tolerance: 1e-10 absolute in log P (= 1e-10 relative in P); observed ≤ 1e-12
    assert got_in == pytest.approx(ref_in, abs=1e-10)
    assert got_out == pytest.approx(ref_out, abs=1e-10)


@pytest.mark.parametrize("k,d,b", [(3, 10, 1e-305), (1, 500, 5e-310), (40, 100, 1e-301)])
def test_exact_outer_rate_where_b_over_r2_underflows(k, d, b):
    """Below x = b/R² = 1e-300 the outer rate is I_x's leading term x^a (1−x)^c / (a B(a, c)), the
    route that keeps it finite in log space; against 50-digit mpmath (x subnormal included)."""
    with mp.workdps(50):
        a, c = mp.mpf(k) / 2, mp.mpf(d - k) / 2
        ref = float(mp.log(mp.betainc(a, c, 0, mp.mpf(b) / mp.mpf(R) ** 2, regularized=True)))
    got = float(theory.threshold_error_rate(k, d, b, sphere="outer", R=R, log=True))
    assert ref < -300                                       # far below float64's range as a rate
    # tolerance: 1e-9 absolute in log P; the terms dropped are O((a + c) x) < 1e-290, and a subnormal
    # b carries ~3 digits less than a normal one (5e-310 is exact to ~1e-5 relative: log error 1e-5)
    assert got == pytest.approx(ref, abs=1e-9 if b > 1e-300 else 2e-5)


@pytest.mark.parametrize("b", [1.0, 1.2, 1.5, 1.68])
@pytest.mark.parametrize("k,d", [(1, 2), (3, 10)])
def test_exact_outer_rate_for_b_between_1_and_r2(k, d, b):
    """For 1 <= b < R² the inner rate is 0 and the outer one is still the Beta tail P[Beta < b/R²]
    (small d, so that it is visibly below 1 up to b = R²)."""
    assert theory.threshold_error_rate(k, d, b, sphere="inner", R=R) == 0.0
    got = theory.threshold_error_rate(k, d, b, sphere="outer", R=R)
    assert got < 1 - 1e-9
    assert got == pytest.approx(stats.beta.cdf(b / R**2, k / 2, (d - k) / 2), rel=1e-10)
    assert theory.threshold_error_rate(k, d, R**2 * 1.001, sphere="outer", R=R) == 1.0


@pytest.mark.parametrize("k,d,b", [(3, 10, 0.4), (50, 100, 0.62), (1500, 3000, 0.6), (10, 1000, 0.05)])
@pytest.mark.parametrize("sphere", ["inner", "outer"])
def test_exact_rate_matches_the_existing_exact_functions(k, d, b, sphere):
    """Σ_{i≤k} zᵢ² > b is α = 1/b on k coordinates and 0 on the rest: three independent routes agree."""
    got = float(theory.threshold_error_rate(k, d, b, sphere=sphere, R=R, log=True))
    two_alpha = float(theory.simplified_exact_error_rate(k, d, 1 / b, 0.0, sphere=sphere, R=R, log=True))
    contour = float(theory.exact_error_rate(theory.simplified_alpha(k, d, 1 / b, 0.0), sphere=sphere, R=R,
                                            log=True))
    # tolerance: 1e-10 absolute in log P, the documented accuracy of both existing functions
    assert got == pytest.approx(two_alpha, abs=1e-10)
    assert got == pytest.approx(contour, abs=1e-10)


def test_exact_rate_against_monte_carlo_on_the_sphere():
    """10⁶ uniform points per sphere at (k, d) = (39, 50), where the optimal rate is ~1e-2."""
    k, d, n = 39, 50, 1_000_000
    opt = theory.optimal_threshold(k, d, R=R, method="exact")
    assert 3e-3 < opt.inner_rate < 3e-2
    rng = np.random.default_rng(20180102)
    hits_in = hits_out = 0
    for _ in range(10):                                    # chunks keep memory at ~40 MB
        g = rng.standard_normal((n // 10, d))
        share = np.sum(g[:, :k] ** 2, axis=1) / np.sum(g * g, axis=1)   # Σ_{i≤k} xᵢ²/r², x = r g/‖g‖
        hits_in += int(np.sum(share > opt.b))              # inner (r = 1): says "outer"
        hits_out += int(np.sum(R**2 * share < opt.b))      # outer (r = R): says "inner"
    for hits, p in ((hits_in, opt.inner_rate), (hits_out, opt.outer_rate)):
        # tolerance: 5 binomial standard deviations (a false failure has probability ~6e-7)
        assert abs(hits - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (hits, n * p)


@pytest.mark.parametrize("k,d,b", [(3, 10, 0.4), (50, 100, 1.1), (1500, 3000, 0.6), (10, 1000, 0.005)])
def test_clt_rate_is_prop_4_1_with_alpha_one_over_b(k, d, b):
    """The CLT route equals simplified_clt_error_rate(k, d, 1/b, 0) and the general clt_error_rate."""
    for sphere in ("inner", "outer"):
        got = float(theory.threshold_error_rate(k, d, b, sphere=sphere, R=R, method="clt", log=True))
        two_alpha = float(theory.simplified_clt_error_rate(k, d, 1 / b, 0.0, sphere=sphere, R=R, log=True))
        general = float(theory.clt_error_rate(theory.simplified_alpha(k, d, 1 / b, 0.0), sphere=sphere, R=R,
                                              log=True))
        # tolerance: relative 1e-12 — the same formula, only multiplied through by b and summed differently
        assert got == pytest.approx(two_alpha, rel=1e-12)
        assert got == pytest.approx(general, rel=1e-12)


@pytest.mark.parametrize("k,d,a,b", [(100, 500, 0.55, 0.7), (250, 500, 1.02, 0.5), (3, 10, 0.3, 0.7)])
def test_simplified_clt_outer_sphere_is_its_own_formula(k, d, a, b):
    """simplified_clt_error_rate(sphere="outer") is Φ(μ'/σ') with λ = 1 − αR² — not the inner rate."""
    lam = np.r_[np.full(k, 1 - a * R**2), np.full(d - k, 1 - b * R**2)]
    ref = stats.norm.logcdf(lam.sum() / math.sqrt(2 * np.sum(lam**2)))
    got = float(theory.simplified_clt_error_rate(k, d, a, b, sphere="outer", R=R, log=True))
    inner = float(theory.simplified_clt_error_rate(k, d, a, b, sphere="inner", R=R, log=True))
    assert got == pytest.approx(ref, rel=1e-12)               # tolerance: summation order only
    assert abs(got - inner) > 0.1                             # would fail if sphere="outer" were ignored
    # and R enters: a different outer radius gives a different outer rate
    assert float(theory.simplified_clt_error_rate(k, d, a, b, sphere="outer", R=1.2, log=True)) != \
        pytest.approx(got, rel=1e-6)


def test_k_equals_d_rates():
    """k = d: B ≡ 1, so the exact rates are indicators; the CLT gives Φ(−√(d/2)) for b ∈ (1, R²)."""
    d = 20
    b = np.array([0.9, 1.2, 1.8])
    assert np.array_equal(theory.threshold_error_rate(d, d, b, sphere="inner", R=R), [1.0, 0.0, 0.0])
    assert np.array_equal(theory.threshold_error_rate(d, d, b, sphere="outer", R=R), [0.0, 0.0, 1.0])
    clt = theory.threshold_error_rate(d, d, 1.2, sphere="inner", R=R, method="clt")
    assert clt == pytest.approx(special.ndtr(-math.sqrt(d / 2)), rel=1e-12)
    for method in ("clt", "exact"):
        opt = theory.optimal_threshold(d, d, R=R, method=method)
        assert opt.b == pytest.approx(((1 + R) / 2) ** 2, rel=1e-15)     # midway in radius
        assert opt.one_minus_b == pytest.approx(1.0 - opt.b, abs=1e-15)
    assert theory.optimal_threshold(d, d, R=R, method="exact").log10_error == -math.inf


# --------------------------------------------------------------------------------------------------
# The optimal threshold
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,criterion", METHOD_CRITERION)
@pytest.mark.parametrize("k,d", [(3, 10), (50, 100), (10, 1000), (180, 200), (1500, 3000)])
def test_optimal_threshold_is_the_minimum_on_a_dense_grid(k, d, method, criterion):
    opt = theory.optimal_threshold(k, d, R=R, method=method, criterion=criterion)
    grid = np.geomspace(1e-4, R**2 * (1 - 1e-9), 20001)     # b ∈ (0, R²), geometric: the optimum spans 1e-3..1
    ratio = grid[1] / grid[0]
    log_in, log_out = log10_rates(k, d, grid, method)
    obj = objective(log_in, log_out, criterion)
    i = int(np.argmin(obj))
    assert 0 < i < grid.size - 1                            # an interior minimum of the grid
    # the search is at least as good as every grid point (tolerance: 1e-9 in log10, rounding only)...
    assert opt.log10_error <= obj[i] + 1e-9
    # ...and lies within one grid step of the grid's best point (a smooth single minimum)
    assert abs(math.log(opt.b / grid[i])) <= math.log(ratio) * (1 + 1e-9)
    # the reported rates are the rates at the returned b
    at_b = log10_rates(k, d, opt.b, method)
    assert opt.log10_inner == pytest.approx(float(at_b[0]), abs=1e-8)   # tolerance: b rounded to float
    assert opt.log10_outer == pytest.approx(float(at_b[1]), abs=1e-8)
    assert opt.log10_error == pytest.approx(float(objective(*at_b, criterion)), abs=1e-8)
    assert opt.inner_rate == pytest.approx(10**opt.log10_inner, rel=1e-12)
    assert opt.one_minus_b == pytest.approx(1.0 - opt.b, abs=1e-15)     # b <= R² < 2: 1 ulp of b


@pytest.mark.parametrize("method", ["clt", "exact"])
@pytest.mark.parametrize("k,d", [(1, 2), (1, 10000), (50, 100), (1500, 3000), (990, 1000), (9999, 10000)])
def test_max_criterion_equalises_the_two_rates(k, d, method):
    """For k < d the minimax threshold is interior, so the two rates are equal there — also where
    1 − b is far below float resolution (k = d − 1 at d = 10⁴: 1 − b ~ 1e-2286, rates ~1e-1141)."""
    opt = theory.optimal_threshold(k, d, R=R, method=method)
    # tolerance: 1e-9 relative in the log rate (the root is found to ~1e-12 in logit b)
    assert opt.log10_inner == pytest.approx(opt.log10_outer, rel=1e-9, abs=1e-9)
    assert opt.log10_error == max(opt.log10_inner, opt.log10_outer)
    if method == "exact":
        assert 0 < opt.b <= 1 and opt.one_minus_b >= 0


def test_half_input_threshold_is_r2_over_1_plus_r2():
    """At k = d/2, B and 1 − B have the same law, so P[B > b] = P[B < b/R²] at b = R²/(1 + R²) exactly;
    the CLT's z-scores are equal there too (by the same algebra)."""
    for method in ("clt", "exact"):
        for d in (100, 3000):
            opt = theory.optimal_threshold(d // 2, d, R=R, method=method)
            assert opt.b == pytest.approx(R**2 / (1 + R**2), rel=1e-10)   # tolerance: root-finder's xtol


@pytest.mark.parametrize("k,d", [(8, 10), (98, 100), (999, 1000)])
def test_exact_sum_optimum_at_b_equal_1_when_d_minus_k_at_most_2(k, d):
    """For d − k <= 2 the Beta density ratio never changes sign: inner + outer falls all the way to b = 1."""
    opt = theory.optimal_threshold(k, d, R=R, method="exact", criterion="sum")
    assert opt.b == 1.0 and opt.inner_rate == 0.0
    assert opt.outer_rate == pytest.approx(stats.beta.cdf(1 / R**2, k / 2, (d - k) / 2), rel=1e-10)
    grid = np.linspace(0.5, 1.2, 701)
    assert np.all(objective(*log10_rates(k, d, grid, "exact"), "sum") >= opt.log10_error - 1e-12)


def test_optimal_error_decreases_in_k():
    """required_k bisects over k, which needs the optimal error to fall with k: checked on every k."""
    for d in (2, 7, 40, 300):
        for method, criterion in METHOD_CRITERION:
            err = [theory.optimal_threshold(k, d, R=R, method=method, criterion=criterion).log10_error
                   for k in range(1, d + 1)]
            assert np.all(np.diff(err) < 0), (d, method, criterion)


# --------------------------------------------------------------------------------------------------
# The required fraction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,criterion", METHOD_CRITERION)
@pytest.mark.parametrize("d,target", [(100, 1e-2), (500, 1e-6), (3000, 1e-14), (10000, 1e-20), (40, 1e-3)])
def test_required_k_is_the_first_k_reaching_the_target(d, target, method, criterion):
    k = theory.required_k(d, target, R=R, method=method, criterion=criterion)
    assert k is not None
    at = theory.optimal_threshold(k, d, R=R, method=method, criterion=criterion)
    assert at.log10_error <= math.log10(target)
    if k > 1:
        below = theory.optimal_threshold(k - 1, d, R=R, method=method, criterion=criterion)
        assert below.log10_error > math.log10(target)
    assert theory.required_fraction(d, target, R=R, method=method, criterion=criterion) == k / d


def test_required_fraction_monotone_in_target_and_in_d():
    curves = required_fraction_curves(dims=(20, 50, 100, 300, 1000, 3000, 10000), targets=PAPER_TARGETS)
    for method, frac in curves.fraction.items():
        finite = np.where(np.isnan(frac), 2.0, frac)          # NaN = unreachable: ranks above every k/d <= 1
        assert np.all(np.diff(finite, axis=0) >= 0), method   # a smaller target needs a larger fraction
        # a larger d needs a smaller fraction, up to the rounding of k to an integer (at most 1/d)
        slack = 1.0 / curves.d[:-1]
        assert np.all(np.diff(finite, axis=1) <= slack), method
        assert frac[0, -1] < 0.05 and frac[-1, -1] < 0.25     # at d = 10⁴ a small fraction suffices
    # the exact answer needs no more of the input than the CLT's (the CLT overestimates these tails)
    assert np.all(curves.fraction["exact"][~np.isnan(curves.fraction["clt"])]
                  <= curves.fraction["clt"][~np.isnan(curves.fraction["clt"])])
    # the curves agree with required_fraction
    j = list(curves.d).index(3000)
    for i, t in enumerate(curves.targets):
        assert curves.fraction["clt"][i, j] == theory.required_fraction(3000, t, R=R, method="clt")


def test_clt_can_miss_a_target_even_at_k_equal_d():
    """At d = 10 the CLT's k = d rate is Φ(−√5) ≈ 0.0127 > 1e-2: unreachable (None / NaN); exact: k = d."""
    assert theory.required_k(10, 1e-2, R=R, method="clt") is None
    assert math.isnan(theory.required_fraction(10, 1e-2, R=R, method="clt"))
    assert theory.required_k(10, 1e-2, R=R, method="exact") == 10
    assert theory.required_k(10, 0.02, R=R, method="clt") is not None


# --------------------------------------------------------------------------------------------------
# Figure, table and paper-reading helpers
# --------------------------------------------------------------------------------------------------


def test_half_input_table_rows():
    rows = half_input_table(dims=(100, 3000))
    assert len(rows) == 2 * 2 * 2
    for r in rows:
        opt = theory.optimal_threshold(r["k"], r["d"], R=R, method=r["method"], criterion=r["criterion"])
        assert r["k"] == r["d"] // 2 and r["b"] == opt.b and r["log10_error"] == opt.log10_error
    assert format_half_input_table(rows).count("\n") == len(rows) + 1


def test_paper_example_interpretations_are_what_they_say():
    rows = {r["name"]: r for r in paper_example_interpretations(3000, 1500, R=R)}
    assert format_interpretations(list(rows.values())).count("\n") == len(rows) + 1
    opt = theory.optimal_threshold(1500, 3000, R=R, method="clt")
    assert rows["clt-optimal-max"]["log10_reported"] == opt.log10_error
    # the midpoint reading, through the general CLT of the α vector (an independent route)
    mid = rows["clt-b-midpoint"]
    assert mid["b"] == pytest.approx((1 + R**2) / 4)
    alpha = theory.simplified_alpha(1500, 3000, 1 / mid["b"], 0.0)
    for sphere in ("inner", "outer"):
        ref = float(theory.clt_error_rate(alpha, sphere=sphere, R=R, log=True)) / LN10
        assert mid[f"log10_{sphere}"] == pytest.approx(ref, rel=1e-12)   # tolerance: summation order
    # independent Gaussian coordinates, exactly: Σ_{i≤k} xᵢ² = χ²_k r²/d
    g = rows["gauss-exact"]
    assert g["log10_inner"] == pytest.approx(stats.chi2.logsf(3000 * g["b"], 1500) / LN10, rel=1e-9)
    assert g["log10_outer"] == pytest.approx(stats.chi2.logcdf(3000 * g["b"] / R**2, 1500) / LN10, rel=1e-9)
    assert g["log10_inner"] == pytest.approx(g["log10_outer"], rel=1e-9)   # b balances the two


def _lambda_moments(k, d, b, r2):
    """``(μ, σ²)`` of ``Σ λᵢ gᵢ²`` written out coordinate by coordinate: ``α = 1/b`` on ``k``, 0 elsewhere;
    inner ``λ = α − 1``, outer ``λ = 1 − α r2`` (Gilmer Prop. 4.1 with its typos corrected)."""
    alpha = np.concatenate([np.full(k, 1.0 / b), np.zeros(d - k)])
    lam_in, lam_out = alpha - 1.0, 1.0 - alpha * r2
    return (lam_in.sum(), 2.0 * np.sum(lam_in**2)), (lam_out.sum(), 2.0 * np.sum(lam_out**2))


def test_paper_example_variant_readings_follow_their_definitions():
    """Each variant row's rates, recomputed at its reported b from the reading's own formula, and the
    balance that chose b (both spheres' rates equal). Tolerance 1e-9 relative: the rows solve for b with
    brentq to 1e-13 in logit(b), and the recomputation sums λ in another order."""
    k, d, r2 = 1500, 3000, R * R
    rows = {r["name"]: r for r in paper_example_interpretations(d, k, R=R)}
    assert "CLT" in rows["clt-optimal-max"]["description"] and "exact" in rows["exact-optimal-max"]["description"]
    assert "CLT" not in rows["exact-optimal-sum"]["description"]

    # printed sign typo: 1 − Φ(μ/σ) = Φ(−μ/σ)
    row = rows["typo-sign"]
    (m_in, v_in), (m_out, v_out) = _lambda_moments(k, d, row["b"], r2)
    assert row["log10_inner"] == pytest.approx(stats.norm.logcdf(-m_in / math.sqrt(v_in)) / LN10, rel=1e-9)
    assert row["log10_outer"] == pytest.approx(stats.norm.logcdf(-m_out / math.sqrt(v_out)) / LN10, rel=1e-9)
    assert row["log10_inner"] == pytest.approx(row["log10_outer"], rel=1e-9)

    # printed σ typo: z = μ / (2 Σ λᵢ²), no square root
    row = rows["typo-sigma"]
    (m_in, v_in), (m_out, v_out) = _lambda_moments(k, d, row["b"], r2)
    assert row["log10_inner"] == pytest.approx(stats.norm.logcdf(m_in / v_in) / LN10, rel=1e-9)
    assert row["log10_outer"] == pytest.approx(stats.norm.logcdf(m_out / v_out) / LN10, rel=1e-9)
    assert row["log10_inner"] == pytest.approx(row["log10_outer"], rel=1e-9)

    # independent Gaussian coordinates, normal approximation: S = χ²_k r²/d ≈ N(r²k/d, 2r⁴k/d²)
    row = rows["gauss-clt"]
    inner = stats.norm(k / d, math.sqrt(2 * k) / d)
    outer = stats.norm(r2 * k / d, r2 * math.sqrt(2 * k) / d)
    assert row["log10_inner"] == pytest.approx(inner.logsf(row["b"]) / LN10, rel=1e-9)
    assert row["log10_outer"] == pytest.approx(outer.logcdf(row["b"]) / LN10, rel=1e-9)
    assert row["log10_inner"] == pytest.approx(row["log10_outer"], rel=1e-9)

    # α R in place of α R²: Prop. 4.1 with outer λ = 1 − α R, at the b where the two CLT rates are equal
    row = rows["clt-R-not-squared"]
    (m_in, v_in), (m_out, v_out) = _lambda_moments(k, d, row["b"], R)
    assert row["log10_inner"] == pytest.approx(stats.norm.logcdf(m_in / math.sqrt(v_in)) / LN10, rel=1e-9)
    assert row["log10_outer"] == pytest.approx(stats.norm.logcdf(m_out / math.sqrt(v_out)) / LN10, rel=1e-9)
    assert row["log10_inner"] == pytest.approx(row["log10_outer"], rel=1e-9)
    assert row["log10_reported"] == max(row["log10_inner"], row["log10_outer"])


def test_half_input_dims_are_the_results_table():
    """The half-input table's dimensions: d = 100 … 2000 and the paper's example, d = 3000."""
    from theory.simplified_optimal import HALF_INPUT_DIMS
    assert HALF_INPUT_DIMS == (100, 500, 1000, 2000, 3000)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,match", [
    (lambda: theory.optimal_threshold(0, 10), "1 <= k <= d"),
    (lambda: theory.optimal_threshold(-3, 10), "1 <= k <= d"),
    (lambda: theory.optimal_threshold(11, 10), "1 <= k <= d"),
    (lambda: theory.optimal_threshold(2.5, 10), "integer"),
    (lambda: theory.optimal_threshold(float("nan"), 10), "integer"),
    (lambda: theory.optimal_threshold(1, 0), "d .* must be >= 1"),
    (lambda: theory.optimal_threshold(1, -5), "d .* must be >= 1"),
    (lambda: theory.optimal_threshold(1, float("inf")), "integer"),
    (lambda: theory.optimal_threshold(5, 10, R=1.0), "R must be"),
    (lambda: theory.optimal_threshold(5, 10, R=0.5), "R must be"),
    (lambda: theory.optimal_threshold(5, 10, R=float("nan")), "R must be"),
    (lambda: theory.optimal_threshold(5, 10, R=float("inf")), "R must be"),
    (lambda: theory.optimal_threshold(5, 10, method="mc"), "method"),
    (lambda: theory.optimal_threshold(5, 10, criterion="mean"), "criterion"),
    (lambda: theory.required_k(100, 0.0), r"target .* \(0, 1\)"),
    (lambda: theory.required_k(100, 1.0), r"target .* \(0, 1\)"),
    (lambda: theory.required_k(100, -1e-3), r"target .* \(0, 1\)"),
    (lambda: theory.required_k(100, float("nan")), r"target .* \(0, 1\)"),
    (lambda: theory.required_fraction(0, 1e-3), "d .* must be >= 1"),
    (lambda: theory.required_fraction(100, 1e-3, R=1.0), "R must be"),
    (lambda: theory.threshold_error_rate(5, 10, 0.0), "b must be > 0"),
    (lambda: theory.threshold_error_rate(5, 10, -1.0), "b must be > 0"),
    (lambda: theory.threshold_error_rate(5, 10, float("nan")), "finite"),
    (lambda: theory.threshold_error_rate(5, 10, 0.5, sphere="middle"), "sphere"),
    (lambda: required_fraction_curves(dims=(10,), targets=(2.0,)), "target"),
])
def test_invalid_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
