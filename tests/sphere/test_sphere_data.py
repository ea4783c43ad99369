"""Sphere sampling: norms, uniformity (exact Beta law of the first coordinate), balance, streams."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from spheres.sphere import data as sdata


@pytest.mark.parametrize("d,r", [(2, 1.0), (10, 1.3), (500, 1.0)])
def test_sample_sphere_norms(d, r):
    x = sdata.sample_sphere(jax.random.key(0), 4096, d, r)
    assert x.shape == (4096, d)
    # float32 normalisation: relative error a few ulps (1e-6), 1e-5 leaves room for d = 500 sums
    np.testing.assert_allclose(np.linalg.norm(np.asarray(x, np.float64), axis=1), r, rtol=1e-5)


@pytest.mark.parametrize("d", [3, 10, 50])
def test_first_coordinate_follows_beta_law(d):
    """On the unit sphere in R^d, x1^2 ~ Beta(1/2, (d-1)/2) and x1 is symmetric. KS test at n=20000:
    a correct sampler fails with probability 1e-3 (the threshold), a wrong law is caught at these n."""
    x = np.asarray(sdata.sample_sphere(jax.random.key(d), 20000, d), np.float64)
    p = stats.kstest(x[:, 0] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue
    assert p > 1e-3
    # symmetry: sign of x1 is a fair coin (binomial test, same threshold)
    assert stats.binomtest(int((x[:, 0] > 0).sum()), len(x)).pvalue > 1e-3


def test_gaussian_not_normalised_fails_the_beta_test():
    """The uniformity test can fail: points in a cube projected radially are not uniform."""
    d = 3
    u = jax.random.uniform(jax.random.key(1), (20000, d), minval=-1, maxval=1)
    x = np.asarray(u / jnp.linalg.norm(u, axis=1, keepdims=True), np.float64)
    assert stats.kstest(x[:, 0] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue < 1e-3


def test_two_spheres_balanced_and_labelled():
    x, y = sdata.sample_two_spheres(jax.random.key(0), 1000, 20, R=1.3)
    assert int(y.sum()) == 500
    norms = np.linalg.norm(np.asarray(x), axis=1)
    np.testing.assert_allclose(norms[np.asarray(y) == 0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(norms[np.asarray(y) == 1], 1.3, rtol=1e-5)


def test_online_stream_is_a_pure_function_of_the_step():
    k = jax.random.key(3)
    a = sdata.online_batch(k, 7, 50, 10)
    b = jax.jit(sdata.online_batch, static_argnums=(2, 3))(k, 7, 50, 10)
    c = sdata.online_batch(k, 8, 50, 10)
    np.testing.assert_array_equal(a[0], sdata.online_batch(k, 7, 50, 10)[0])  # same step, same data
    # jit may fuse the normalisation differently: equal to a few float32 ulps
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(a[0], c[0])


def test_finite_set_epochs_cover_every_point_once():
    fs = sdata.make_finite_set(jax.random.key(0), 100, 5)
    per_epoch = sdata.steps_per_epoch(100, 20)
    for epoch in range(2):
        perm = sdata.epoch_permutation(fs, epoch)
        xs = np.concatenate([np.asarray(sdata.finite_batch(fs, perm, epoch * per_epoch + i, 20)[0])
                             for i in range(per_epoch)])
        # every point exactly once per epoch, in a different order each epoch
        np.testing.assert_array_equal(np.sort(xs[:, 0]), np.sort(np.asarray(fs.x[:, 0])))
    p0, p1 = sdata.epoch_permutation(fs, 0), sdata.epoch_permutation(fs, 1)
    assert not np.array_equal(p0, p1)


@pytest.mark.parametrize("n", [100, 105])
def test_finite_batch_is_the_slice_of_its_epochs_permutation(n):
    """Step s of a pass in batches of 20 is ``perm_e[20 i : 20 (i + 1)]`` with ``e, i = divmod(s, n // 20)``,
    the permutation of epoch e, for steps several epochs in (105 points: the last 5 of each shuffle
    are dropped)."""
    fs = sdata.make_finite_set(jax.random.key(2), n, 5)
    for step in (0, 4, 5, 13, 24, 37):
        epoch, i = divmod(step, 5)
        perm = np.asarray(sdata.epoch_permutation(fs, epoch))
        x, y = sdata.finite_batch(fs, jnp.asarray(perm), step, 20)
        np.testing.assert_array_equal(x, np.asarray(fs.x)[perm[20 * i:20 * (i + 1)]])
        np.testing.assert_array_equal(y, np.asarray(fs.y)[perm[20 * i:20 * (i + 1)]])


def test_default_outer_radius_is_the_papers():
    """Gilmer et al. use R = 1.3; every sampler defaults to it."""
    key = jax.random.key(4)
    for x, y in (sdata.sample_two_spheres(key, 10, 5), sdata.online_batch(key, 3, 10, 5),
                 sdata.make_finite_set(key, 10, 5)[:2]):
        norms = np.linalg.norm(np.asarray(x, np.float64), axis=1)
        np.testing.assert_allclose(norms, np.where(np.asarray(y) == 1, 1.3, 1.0), rtol=1e-6)


@pytest.mark.parametrize("n", [6, 7])
def test_two_spheres_order_first_half_inner_extra_point_outer(n):
    """The first n // 2 points are inner (label 0), the rest outer; for odd n the extra point is outer."""
    x, y = sdata.sample_two_spheres(jax.random.key(1), n, 4)
    np.testing.assert_array_equal(y, [0] * (n // 2) + [1] * (n - n // 2))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(x), axis=1), np.where(np.asarray(y) == 1, 1.3, 1.0),
                               rtol=1e-6)


def test_finite_set_smaller_than_batch_is_an_error():
    with pytest.raises(ValueError, match="smaller than the batch"):
        sdata.steps_per_epoch(10, 50)
    assert sdata.steps_per_epoch(50, 50) == 1 and sdata.steps_per_epoch(99, 50) == 1
