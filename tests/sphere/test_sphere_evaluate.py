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
