"""Property tests of the projections every attack relies on, over random shapes, norms and radii
(hypothesis, float64 NumPy references), and of PGD's random start (its distribution, by
Kolmogorov–Smirnov against the uniform law in the ball).

A projection P onto a closed convex set C is characterised by: P(x) ∈ C, P(x) = x for x ∈ C,
idempotence, and ‖P(x) − x‖ ≤ ‖c − x‖ for every c ∈ C (nearest point; checked against random c).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

import attacks
from attacks._base import clip_to_box, norm, safe_normalize
from attacks.pgd import project_ball
from attacks.sphere import project_to_sphere, slerp, tangent_direction


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
# no magnitudes below 1e-100: squares of those underflow, which no projection can be asked about
finite = st.floats(-10, 10, allow_nan=False, width=64).map(lambda v: 0.0 if abs(v) < 1e-100 else v)
SETTINGS = settings(max_examples=50, deadline=None)


def arrays(shape):
    return hnp.arrays(np.float64, shape, elements=finite)


@SETTINGS
@given(data=st.data(), shape=shapes, eps=st.floats(1e-3, 5.0), which=st.sampled_from(["linf", "l2"]))
def test_project_ball_is_the_euclidean_projection(data, shape, eps, which):
    x = data.draw(arrays(shape))
    center = data.draw(arrays(shape))
    p = np.asarray(project_ball(jnp.asarray(x), jnp.asarray(center), jnp.asarray(eps), which))
    # tolerance: float64 rounding of a scale and a difference, relative to the sizes involved
    tol = 1e-12 * (1 + np.max(np.abs(x)) + np.max(np.abs(center)))
    d = p - center
    size = np.max(np.abs(d)) if which == "linf" else np.sqrt(np.sum(d * d))
    assert size <= eps * (1 + 1e-12) + tol                           # in the ball
    q = np.asarray(project_ball(jnp.asarray(p), jnp.asarray(center), jnp.asarray(eps), which))
    np.testing.assert_allclose(q, p, atol=tol)                        # idempotent
    # the reference: clip per coordinate (L∞), radial shrink only when outside (L2)
    delta = x - center
    if which == "linf":
        ref = center + np.clip(delta, -eps, eps)
    else:
        n = np.sqrt(np.sum(delta * delta))
        ref = center + (delta if n <= eps else delta * eps / n)
    np.testing.assert_allclose(p, ref, atol=tol)
    # nearest point: no point of the ball is closer to x (random ball points, both norms' balls)
    for _ in range(5):
        u = data.draw(arrays(shape))
        if which == "linf":
            c = center + np.clip(u, -eps, eps)
        else:
            nu = np.sqrt(np.sum(u * u))
            c = center + (u if nu <= eps else u * eps / nu)
        assert np.sum((p - x) ** 2) <= np.sum((c - x) ** 2) + tol


@SETTINGS
# frac: 0 or ≥ 1e-6 (XLA on CPU flushes subnormal results to zero, which is not a projection bug)
@given(data=st.data(), shape=shapes, eps=st.floats(1e-3, 5.0),
       frac=st.floats(0.0, 0.999).map(lambda f: 0.0 if f < 1e-6 else f),
       which=st.sampled_from(["linf", "l2"]))
def test_points_inside_the_ball_are_unchanged(data, shape, eps, frac, which):
    center = data.draw(arrays(shape))
    u = data.draw(arrays(shape).filter(lambda a: np.max(np.abs(a)) > 1e-3))
    scale = np.max(np.abs(u)) if which == "linf" else np.sqrt(np.sum(u * u))
    x = center + u / scale * eps * frac                      # strictly inside (frac < 1)
    p = np.asarray(project_ball(jnp.asarray(x), jnp.asarray(center), jnp.asarray(eps), which))
    np.testing.assert_array_equal(p, x)


@SETTINGS
@given(data=st.data(), shape=shapes, radius=st.floats(1e-3, 100.0))
def test_project_to_sphere(data, shape, radius):
    x = data.draw(arrays(shape).filter(lambda a: np.sqrt(np.sum(a * a)) > 1e-3))
    p = np.asarray(project_to_sphere(jnp.asarray(x), jnp.asarray(radius)))
    assert np.sqrt(np.sum(p * p)) == pytest.approx(radius, rel=1e-12)
    # same direction (positive multiple of x): the nearest point of the sphere
    np.testing.assert_allclose(p, x * radius / np.sqrt(np.sum(x * x)), rtol=1e-12, atol=1e-14 * radius)
    q = np.asarray(project_to_sphere(jnp.asarray(p), jnp.asarray(radius)))
    np.testing.assert_allclose(q, p, rtol=1e-12, atol=1e-14 * radius)


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_tangent_direction_is_unit_and_orthogonal(data, shape):
    x = data.draw(arrays(shape).filter(lambda a: np.sqrt(np.sum(a * a)) > 1e-2))
    g = data.draw(arrays(shape))
    t = np.asarray(tangent_direction(jnp.asarray(g), jnp.asarray(x)))
    u = x / np.sqrt(np.sum(x * x))
    perp = g - np.sum(g * u) * u
    # a (nearly) radial gradient has no well-defined tangent part (test_..._of_zero covers 0)
    assume(np.sqrt(np.sum(perp * perp)) > 1e-6 * (1 + np.sqrt(np.sum(g * g))))
    assert np.sqrt(np.sum(t * t)) == pytest.approx(1.0, rel=1e-10)
    assert abs(np.sum(t * u)) < 1e-8
    np.testing.assert_allclose(t, perp / np.sqrt(np.sum(perp * perp)), atol=1e-8)


def test_tangent_and_normalize_of_zero_are_zero():
    z = jnp.zeros(4)
    np.testing.assert_array_equal(safe_normalize(z), z)
    np.testing.assert_array_equal(tangent_direction(z, jnp.ones(4)), z)
    np.testing.assert_array_equal(tangent_direction(jnp.ones(4), jnp.ones(4)), z)   # radial


@SETTINGS
@given(data=st.data(), d=st.integers(2, 6), radius=st.floats(0.1, 10.0), t=st.floats(0.0, 1.0))
def test_slerp_stays_on_the_sphere_and_interpolates_the_angle(data, d, radius, t):
    a = data.draw(arrays((d,)).filter(lambda v: np.sqrt(np.sum(v * v)) > 1e-2))
    b = data.draw(arrays((d,)).filter(lambda v: np.sqrt(np.sum(v * v)) > 1e-2))
    a, b = a * radius / np.linalg.norm(a), b * radius / np.linalg.norm(b)
    cos_ab = np.clip(a @ b / radius**2, -1, 1)
    theta = np.arccos(cos_ab)
    assume(theta < np.pi - 1e-3)       # antipodal: any great circle is valid (no angle to check)
    p = np.asarray(slerp(jnp.asarray(a), jnp.asarray(b), jnp.asarray(t)))
    assert np.linalg.norm(p) == pytest.approx(radius, rel=1e-10)
    # the angle from a is t·θ and from b is (1 − t)·θ (tolerance: arccos near 0 loses ~√ε)
    ang = lambda u, v: np.arccos(np.clip(u @ v / radius**2, -1, 1))      # noqa: E731
    assert ang(a, p) == pytest.approx(t * theta, abs=1e-6)
    assert ang(p, b) == pytest.approx((1 - t) * theta, abs=1e-6)


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_clip_to_box(data, shape):
    x = data.draw(arrays(shape))
    lo = data.draw(arrays(shape))
    width = np.abs(data.draw(arrays(shape)))
    hi = lo + width
    p = np.asarray(clip_to_box(jnp.asarray(x), {"lo": jnp.asarray(lo), "hi": jnp.asarray(hi)}))
    np.testing.assert_array_equal(p, np.minimum(np.maximum(x, lo), hi))
    assert np.all(p >= lo) and np.all(p <= hi)
    np.testing.assert_array_equal(clip_to_box(jnp.asarray(x), {}), x)          # no box: identity


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_norm_matches_numpy(data, shape):
    v = data.draw(arrays(shape))
    assert float(norm(jnp.asarray(v), "linf")) == np.max(np.abs(v))
    assert float(norm(jnp.asarray(v), "l2")) == pytest.approx(np.linalg.norm(v.ravel()), rel=1e-14, abs=1e-300)


# ------------------------------------------------------------------------ PGD's random start


def _starts(norm_kind, d, eps, n=400):
    """PGD with 0 steps returns its (evaluated) random start: n starts around 0 in R^d."""
    f = lambda x: jnp.stack([jnp.zeros((), x.dtype), -1.0 - jnp.sum(x * x)])   # never a success
    res = attacks.pgd(f, jnp.zeros((n, d)), jnp.zeros((n,), jnp.int32), eps=eps, norm=norm_kind,
                      num_steps=0, key=jax.random.key(1))
    return np.asarray(res.x_adv)


def test_linf_random_start_is_uniform_in_the_cube():
    eps, d = 0.3, 5
    x = _starts("linf", d, eps)
    assert np.all(np.abs(x) <= eps)
    # each coordinate U(−ε, ε): KS over the 2000 coordinates (rejection at 1e-4 only)
    assert stats.kstest(x.ravel(), stats.uniform(-eps, 2 * eps).cdf).pvalue > 1e-4


def test_l2_random_start_is_uniform_in_the_ball():
    eps, d = 0.7, 4
    x = _starts("l2", d, eps)
    r = np.linalg.norm(x, axis=1)
    assert np.all(r <= eps * (1 + 1e-12))
    # uniform in volume ⟺ (r/ε)^d ~ U(0, 1); directions uniform ⟺ x/r has mean 0
    assert stats.kstest((r / eps) ** d, "uniform").pvalue > 1e-4
    # tolerance: 5 standard errors of a mean of 400 unit vectors' coordinates (sd 1/√d)
    assert np.all(np.abs((x / r[:, None]).mean(0)) < 5 / np.sqrt(d * 400))
