"""Streaming evaluation: exact binomial bounds, chunking invariance, known error rates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from spheres.sphere import evaluate


@pytest.mark.parametrize("k,n", [(0, 10), (0, 10_000_000), (3, 100), (50, 100), (100, 100), (7, 12345)])
def test_clopper_pearson_matches_scipy_exact_interval(k, n):
    lo, hi = evaluate.clopper_pearson(k, n, 0.95)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    # both are beta quantiles found by root finding; scipy's own result is good to ~1e-7 relative at
    # n = 1e7 (ours uses the closed form there, checked exactly below), so compare at 1e-6
    np.testing.assert_allclose([lo, hi], [ref.low, ref.high], rtol=1e-6, atol=1e-300)


def test_zero_errors_upper_bound_closed_form():
    _, hi = evaluate.clopper_pearson(0, 10_000_000)
    # 1 - 0.025^(1/n) to float64 precision (mpmath reference, 30 digits)
    import mpmath
    mpmath.mp.dps = 30
    ref = float(1 - mpmath.mpf("0.025") ** (mpmath.mpf(1) / 10_000_000))
    np.testing.assert_allclose(hi, ref, rtol=1e-13)
    lo, _ = evaluate.clopper_pearson(10, 10, 0.95)
    np.testing.assert_allclose(lo, 0.025 ** 0.1, rtol=1e-13)


def _halfspace_logits(variables, x):
    # classifies "outer" iff x_0 > t: on the inner sphere (label 0) the error rate is P(x_0 > t)
    return x[:, 0] - variables["t"]


def test_error_rate_of_halfspace_matches_beta_law():
    d, t, n = 5, 0.3, 200_000
    res = evaluate.sphere_error_rate(_halfspace_logits, {"t": jnp.asarray(t)}, key=jax.random.key(0),
                                     d=d, radius=1.0, label=0, n=n, chunk=7_000, progress=False)
    exact = 0.5 * stats.beta(0.5, (d - 1) / 2).sf(t**2)
    assert res.n == n and res.lower <= exact <= res.upper
    assert res.rate == res.errors / n


def test_result_independent_of_block_grouping_and_partial_chunk():
    kw = dict(key=jax.random.key(1), d=4, radius=1.0, label=0, n=25_001, chunk=1000, progress=False)
    a = evaluate.sphere_error_rate(_halfspace_logits, {"t": jnp.asarray(0.5)}, chunks_per_block=3, **kw)
    b = evaluate.sphere_error_rate(_halfspace_logits, {"t": jnp.asarray(0.5)}, chunks_per_block=10, **kw)
    assert a.errors == b.errors


def test_counter_compiles_once_for_repeated_calls():
    kw = dict(key=jax.random.key(1), d=4, radius=1.0, label=0, n=5000, chunk=1000, progress=False)
    evaluate.sphere_error_rate(_halfspace_logits, {"t": jnp.asarray(0.5)}, **kw)
    counter = evaluate.make_outcome_counter(_halfspace_logits, 4, 1.0, 0, 1000, 10,
                                            evaluate.data_mesh())
    size = counter._cache_size()
    evaluate.sphere_error_rate(_halfspace_logits, {"t": jnp.asarray(0.1)}, **kw)
    assert counter._cache_size() == size == 1


def test_bad_n_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        evaluate.sphere_error_rate(_halfspace_logits, {"t": 0.0}, key=jax.random.key(0), d=3,
                                   radius=1.0, label=0, n=0)


def test_last_block_near_int32_limit_counts_only_valid_points():
    # n just below 2**31: the last block's padding chunks reach n + chunks_per_block·chunk, past the
    # int32 range. A mask built as c·chunk + i < n wrapped around there and counted 99,999 points
    # instead of 83,647. Every point is an error here (logit > 0 on the inner sphere), so the count
    # is the number of valid points and must be exact.
    n, chunk, per_block = 2**31 - 1, 10_000, 10
    always_outer = lambda variables, x: jnp.ones(x.shape[0])
    count = evaluate.make_error_counter(always_outer, 2, 1.0, 0, chunk, per_block, evaluate.data_mesh())
    last = (n - 1) // chunk
    got = int(count({}, jax.random.key(0), jnp.asarray(last, jnp.int32), jnp.asarray(n, jnp.int32)))
    assert got == n - last * chunk == 3_647
    first = last - per_block + 1   # a block that ends exactly at the last chunk
    got = int(count({}, jax.random.key(0), jnp.asarray(first, jnp.int32), jnp.asarray(n, jnp.int32)))
    assert got == n - first * chunk == 93_647


# --- added for docs/mutation.md (issue 26): exact counts, the outer label, non-finite outputs ---

def _constant_logits(variables, x):
    # the same logit for every point: a classifier that always says "outer" (c > 0) or "inner" (c <= 0)
    return jnp.full(x.shape[0], variables["c"])


@pytest.mark.parametrize("n,chunk,per_block", [(2_501, 1_000, 2), (3_000, 1_000, 2), (999, 1_000, 4)])
def test_counts_are_exact_for_constant_classifiers(n, chunk, per_block):
    # a constant classifier is wrong on every point of one sphere and right on every point of the
    # other, so the counts are known exactly: n or 0 (partial last chunk, padding chunks and a block
    # boundary all included — one point too many or too few is a failure)
    kw = dict(key=jax.random.key(2), d=3, n=n, chunk=chunk, chunks_per_block=per_block, progress=False)
    say_outer, say_inner = {"c": jnp.asarray(1.0)}, {"c": jnp.asarray(-1.0)}
    assert evaluate.sphere_error_rate(_constant_logits, say_outer, radius=1.0, label=0, **kw).errors == n
    assert evaluate.sphere_error_rate(_constant_logits, say_inner, radius=1.0, label=0, **kw).errors == 0
    assert evaluate.sphere_error_rate(_constant_logits, say_outer, radius=1.3, label=1, **kw).errors == 0
    res = evaluate.sphere_error_rate(_constant_logits, say_inner, radius=1.3, label=1, **kw)
    assert (res.errors, res.n, res.rate, res.upper) == (n, n, 1.0, 1.0)
    # logit exactly 0 is "inner" (the rule is logit > 0 ⇔ outer)
    zero = {"c": jnp.asarray(0.0)}
    assert evaluate.sphere_error_rate(_constant_logits, zero, radius=1.3, label=1, **kw).errors == n


def test_error_counter_outer_label_and_partial_chunk():
    # the int32-safe block counter used by callers with n < 2**31: label 1 (outer) counts logit <= 0
    chunk, per_block, n = 1_000, 3, 2_501
    say_inner = lambda variables, x: -jnp.ones(x.shape[0])           # noqa: E731
    count = evaluate.make_error_counter(say_inner, 2, 1.3, 1, chunk, per_block, evaluate.data_mesh())
    got = int(count({}, jax.random.key(0), jnp.asarray(0, jnp.int32), jnp.asarray(n, jnp.int32)))
    assert got == n
    count0 = evaluate.make_error_counter(say_inner, 2, 1.0, 0, chunk, per_block, evaluate.data_mesh())
    assert int(count0({}, jax.random.key(0), jnp.asarray(0, jnp.int32), jnp.asarray(n, jnp.int32))) == 0
    # cached on its (hashable) arguments: the same function object, so its jit cache is reused
    assert evaluate.make_error_counter(say_inner, 2, 1.3, 1, chunk, per_block, evaluate.data_mesh()) is count


def test_two_sphere_rates_of_a_halfspace_match_the_beta_law():
    # "outer" iff x₀ > t; on the sphere of radius r, x = r·u with u uniform on S^{d−1} and
    # P(u₀ > s) = ½ P(u₀² > s²), u₀² ~ Beta(½, (d−1)/2), for s >= 0 (the outer sphere errs when u₀ <= t/R)
    d, t, R, n = 5, 0.3, 1.3, 100_000
    res = evaluate.two_sphere_error_rates(_halfspace_logits, {"t": jnp.asarray(t)}, key=jax.random.key(3),
                                          d=d, R=R, n=n, chunk=10_000, progress=False)
    inner_exact = 0.5 * stats.beta(0.5, (d - 1) / 2).sf(t**2)              # P(x₀ > t), |x| = 1
    outer_exact = 1 - 0.5 * stats.beta(0.5, (d - 1) / 2).sf((t / R) ** 2)  # P(R·u₀ <= t)
    # tolerance: the 95% Clopper–Pearson intervals (each misses with probability <= 5%; fixed key)
    for name, exact in (("inner", inner_exact), ("outer", outer_exact)):
        r = res[name]
        assert r.n == n and r.lower <= exact <= r.upper, (name, r, exact)
        assert r.confidence == 0.95 and r.rate == r.errors / n


def _nan_right_half(variables, x):
    # NaN where x₀ > 0, else "inner": on the inner sphere the finite outputs are all correct
    return jnp.where(x[:, 0] > 0, jnp.nan, -1.0)


def test_nonfinite_outputs_raise_or_count():
    kw = dict(key=jax.random.key(4), d=3, radius=1.0, label=0, chunk=1_000, progress=False)
    with pytest.raises(evaluate.NonFiniteOutputError, match="of 4,000"):
        evaluate.sphere_error_rate(_nan_right_half, {}, n=4_000, **kw)
    res = evaluate.sphere_error_rate(_nan_right_half, {}, n=4_000, nonfinite="count", **kw)
    # every error is a NaN point: x₀ > 0 has probability ½ on the sphere;
    # tolerance: 4.5 binomial standard deviations (√(n/4) = 31.6)
    assert abs(res.errors - 2_000) < 4.5 * 31.6 and res.errors > 0
    # all outputs non-finite: counted as errors, exactly n
    all_nan = lambda variables, x: jnp.full(x.shape[0], jnp.inf)          # noqa: E731
    assert evaluate.sphere_error_rate(all_nan, {}, n=2_500, nonfinite="count", **kw).errors == 2_500
    # finite outputs do not raise under the default
    assert evaluate.sphere_error_rate(_constant_logits, {"c": jnp.asarray(-1.0)}, n=2_500, **kw).errors == 0
    with pytest.raises(ValueError, match="nonfinite"):
        evaluate.sphere_error_rate(_constant_logits, {"c": 0.0}, n=10, nonfinite="ignore", **kw)


def test_too_many_chunks_is_rejected_before_running():
    # 2**31 chunks of one point: refused up front (the chunk index is int32); 2**31 − 1 would be run
    with pytest.raises(ValueError, match="2\\*\\*31"):
        evaluate.sphere_error_rate(_constant_logits, {"c": 0.0}, key=jax.random.key(0), d=2, radius=1.0,
                                   label=0, n=2**31, chunk=1, progress=False)


@pytest.mark.parametrize("radius, label", [(1.0, 0), (1.3, 1)])
def test_sphere_logits_are_the_points_the_error_rate_counts(radius, label):
    """Same key, n and chunk (a partial last chunk): the logits' sign gives exactly the count of
    `sphere_error_rate`, and their distribution is the half-space's Beta law (x₀/r + 1)/2 ~
    Beta((d−1)/2, (d−1)/2) (KS at 1e-3: a wrong sampling would fail by far)."""
    d, n, chunk, t = 6, 25_000, 10_000, 0.2
    v = {"t": jnp.asarray(t)}
    key = jax.random.key(7)
    z = evaluate.sphere_logits(_halfspace_logits, v, key=key, d=d, radius=radius, n=n, chunk=chunk)
    assert z.shape == (n,)
    res = evaluate.sphere_error_rate(_halfspace_logits, v, key=key, d=d, radius=radius, label=label, n=n,
                                     chunk=chunk, progress=False)
    assert res.errors == (int(np.sum(z > 0)) if label == 0 else int(np.sum(z <= 0)))
    u = ((z + t) / radius + 1) / 2
    assert stats.kstest(u, stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="positive"):
        evaluate.sphere_logits(_halfspace_logits, v, key=key, d=d, radius=radius, n=0)


def test_best_offset_is_the_minimum_over_every_threshold():
    """Against brute force over a grid that contains every logit, midpoints and both ends: the
    error count ``#(inner > t) + #(outer <= t)`` is piecewise constant between logits."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = np.round(rng.normal(-1.0, 1.0, rng.integers(1, 40)), 1)      # rounded: ties occur
        b = np.round(rng.normal(1.0 + rng.uniform(-2, 2), 1.0, rng.integers(1, 40)), 1)
        vals = np.unique(np.concatenate([a, b]))
        grid = np.concatenate([[vals[0] - 1], vals, (vals[1:] + vals[:-1]) / 2, [vals[-1] + 1]])
        brute = [(int(np.sum(a > g) + np.sum(b <= g)), abs(g), g) for g in grid]
        best = min(brute)[0]
        r = evaluate.best_offset(a, b)
        assert r["total"] == best == r["inner"] + r["outer"]
        assert r["inner"] == np.sum(a > r["offset"]) and r["outer"] == np.sum(b <= r["offset"])
        assert (r["inner_at_0"], r["outer_at_0"]) == (np.sum(a > 0), np.sum(b <= 0))
    # separable: no error at the best t; ties go to the t nearest 0
    r = evaluate.best_offset([-3.0, -2.0], [2.0, 5.0])
    assert r["total"] == 0 and -2.0 <= r["offset"] < 2.0 and abs(r["offset"]) == 2.0
    # overlapping by one point each way: at least one error whatever t
    assert evaluate.best_offset([-1.0, 1.0], [0.5, 2.0])["total"] == 1
    with pytest.raises(ValueError, match="finite"):
        evaluate.best_offset([0.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        evaluate.best_offset([], [1.0])
