"""theory.quadratic: alpha extraction, perfection test, ellipsoid and worst-case points of QuadraticNet."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from spheres.sphere.models import QuadraticNet, perfect_quadratic_variables

R = 1.3


pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("h,d", [(3, 7), (7, 7), (12, 5)])
def test_alphas_are_sorted_eigenvalues_with_zeros(h, d):
    rng = np.random.default_rng(h * d)
    W, w, b = rng.standard_normal((h, d)), 0.7, -1.9
    alpha = np.asarray(theory.alphas(W, w, b))
    ref = np.linalg.eigvalsh(w / -b * W.T @ W)                    # ascending
    assert alpha.shape == (d,)
    assert np.all(np.diff(alpha) >= 0)
    # tolerance: eigvalsh of WᵀW vs SVD of W, both backward stable (observed ~1e-15 absolute)
    np.testing.assert_allclose(alpha, ref, atol=1e-12 * ref.max())
    assert np.sum(alpha == 0) == max(d - h, 0)                    # exact zeros for the null space


def test_alphas_define_the_logit():
    # ŷ(x)/(−b) = Σ αᵢ zᵢ² − 1 with z = Vᵀx: check through the model itself on random x
    model = QuadraticNet(hidden=6)
    x = jax.random.normal(jax.random.key(0), (50, 4))
    variables = model.init(jax.random.key(1), x)
    variables = {"params": {**variables["params"], "w": jnp.asarray(0.8), "b": jnp.asarray(-1.5)}}
    p = variables["params"]
    alpha = theory.alphas_from_variables(variables)
    assert jnp.allclose(alpha, theory.alphas(p["W"], p["w"], p["b"]))
    y = model.apply(variables, x)
    _, _, vh = np.linalg.svd(np.asarray(p["W"]))
    s2 = np.linalg.svd(np.asarray(p["W"]), compute_uv=False) ** 2 * 0.8 / 1.5   # unsorted α for vh rows
    z = np.asarray(x) @ vh.T
    # tolerance: float64 rounding of two ways of evaluating the same quadratic form
    np.testing.assert_allclose(np.asarray(y) / 1.5, z**2 @ s2 - 1, rtol=1e-10, atol=1e-12)
    assert jnp.allclose(theory.alphas_from_variables(variables["params"]), alpha)


def test_alphas_reject_nonnegative_b_and_give_nan_under_jit():
    W = jnp.eye(3)
    with pytest.raises(ValueError, match="b < 0"):
        theory.alphas(W, 1.0, 0.0)
    with pytest.raises(ValueError):
        theory.alphas(W, 1.0, 0.3)
    out = jax.jit(theory.alphas)(W, 1.0, 0.5)
    assert jnp.all(jnp.isnan(out))
    ok = jax.jit(theory.alphas)(W, 1.0, -2.0)
    assert jnp.allclose(ok, 0.5)


def test_alphas_jit_equals_eager_and_float32_warns():
    W = jax.random.normal(jax.random.key(0), (5, 8))
    assert jnp.array_equal(jax.jit(theory.alphas)(W, 1.0, -1.0), theory.alphas(W, 1.0, -1.0))
    with jax.enable_x64(False):
        with pytest.warns(theory.PrecisionWarning):
            theory.alphas(np.eye(2, dtype=np.float32), 1.0, -1.0)


def test_perfect_variables_are_perfect():
    variables = perfect_quadratic_variables(20, 30, R, key=jax.random.key(0), dtype=jnp.float64)
    alpha = theory.alphas_from_variables(variables)
    assert bool(theory.is_perfect(alpha, R))
    assert float(theory.fraction_in_range(alpha, R)) == 1.0
    assert theory.exact_error_rate(np.asarray(alpha)) == 0.0
    assert theory.exact_error_rate(np.asarray(alpha), sphere="outer", R=R) == 0.0


def test_is_perfect_and_fraction_boundaries_and_batching():
    lo = 1 / R**2
    alpha = jnp.array([[lo, 0.8, 1.0],            # closed interval: both ends are in range
                       [lo, 0.8, 1.0 + 1e-12],    # float64 resolves a 1e-12 excess
                       [lo * (1 - 1e-12), 0.8, 0.9],
                       [0.0, 2.0, 0.9]])
    assert theory.is_perfect(alpha, R).tolist() == [True, False, False, False]
    np.testing.assert_allclose(theory.fraction_in_range(alpha, R), [1, 2 / 3, 2 / 3, 1 / 3])
    with pytest.raises(ValueError):
        theory.is_perfect(alpha, 1.0)


def test_ellipsoid_semi_axes():
    alpha = jnp.array([-0.5, 0.0, 0.25, 1.0, 4.0])
    np.testing.assert_array_equal(theory.ellipsoid_semi_axes(alpha), [jnp.inf, jnp.inf, 2.0, 1.0, 0.5])


def test_worst_case_points_are_the_extremes_on_each_sphere():
    rng = np.random.default_rng(0)
    h, d = 12, 8
    W = rng.standard_normal((h, d)) / np.sqrt(d)
    w, b = 1.0, -1.0
    wc = theory.worst_case_points(W, w, b, R=R)
    alpha = np.asarray(theory.alphas(W, w, b))
    # on the spheres, and the closed-form logits −b(α r² − 1) — tolerance: float64 rounding
    assert float(jnp.linalg.norm(wc.inner_x)) == pytest.approx(1.0, rel=1e-12)
    assert float(jnp.linalg.norm(wc.outer_x)) == pytest.approx(R, rel=1e-12)
    assert float(wc.inner_logit) == pytest.approx(-b * (alpha[-1] - 1), rel=1e-10)
    assert float(wc.outer_logit) == pytest.approx(-b * (alpha[0] * R**2 - 1), rel=1e-10)
    # no random point of either sphere beats them (Rayleigh quotient bounds)
    u = rng.standard_normal((20000, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    logit = lambda x: w * np.sum((x @ W.T) ** 2, axis=1) + b   # noqa: E731
    assert logit(u).max() <= float(wc.inner_logit) + 1e-12
    assert logit(R * u).min() >= float(wc.outer_logit) - 1e-12


def test_worst_case_with_h_less_than_d_uses_the_null_space():
    W = np.random.default_rng(1).standard_normal((2, 5))
    wc = theory.worst_case_points(W, 1.0, -1.0, R=R)
    assert float(wc.alpha_min) == 0.0
    # the outer worst case is in the null space: logit = b exactly (every outer point there is an error)
    assert float(wc.outer_logit) == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_allclose(W @ np.asarray(wc.outer_x), 0.0, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # float64 is on: no precision warning
        theory.worst_case_points_from_variables({"params": {"W": W, "w": 1.0, "b": -1.0}}, R=R)


def test_worst_case_reports_the_extreme_alphas_and_defaults_to_R_1_3():
    # alpha_max / alpha_min against NumPy's eigenvalues of WᵀW (w = 1, b = −1: α = eig(WᵀW)),
    # on a square W with well-separated eigenvalues so a neighbour of the extreme cannot pass
    rng = np.random.default_rng(2)
    W = rng.standard_normal((6, 6))
    eig = np.linalg.eigvalsh(W.T @ W)
    assert np.min(np.diff(eig)) > 1e-3
    wc = theory.worst_case_points(W, 1.0, -1.0)
    assert float(wc.alpha_max) == pytest.approx(eig[-1], rel=1e-10)
    assert float(wc.alpha_min) == pytest.approx(eig[0], rel=1e-10)
    # the default outer radius is the paper's 1.3, here and from Flax variables
    assert float(jnp.linalg.norm(wc.outer_x)) == pytest.approx(1.3, rel=1e-12)
    wv = theory.worst_case_points_from_variables({"params": {"W": W, "w": 1.0, "b": -1.0}})
    assert float(jnp.linalg.norm(wv.outer_x)) == pytest.approx(1.3, rel=1e-12)
    assert float(wv.alpha_max) == pytest.approx(eig[-1], rel=1e-10)
    # R is keyword-only: a positional fourth argument is a mistake, not a radius
    with pytest.raises(TypeError):
        theory.worst_case_points(W, 1.0, -1.0, 1.3)
    with pytest.raises(TypeError):
        theory.worst_case_points_from_variables({"params": {"W": W, "w": 1.0, "b": -1.0}}, 1.3)


def test_fraction_in_range_default_radius_is_1_3():
    # 1/1.3² = 0.592: of (0.3, 0.5, 0.9) only 0.9 is in range; a wider R would admit all three
    alpha = jnp.array([0.3, 0.5, 0.9])
    assert float(theory.fraction_in_range(alpha)) == pytest.approx(1 / 3)
    assert not bool(theory.is_perfect(alpha))


def test_alphas_refuse_a_W_that_is_not_a_matrix_and_b_zero_under_jit():
    with pytest.raises(ValueError, match=r"W must have shape \(h, d\)"):
        theory.alphas(jnp.ones(3), 1.0, -1.0)
    with pytest.raises(ValueError, match=r"W must have shape \(h, d\)"):
        theory.alphas(jnp.ones((2, 3, 4)), 1.0, -1.0)
    # b = 0 is the edge of the refusal (b < 0 needed): NaN under jit, like b > 0
    assert jnp.all(jnp.isnan(jax.jit(theory.alphas)(jnp.eye(3), 1.0, 0.0)))


def test_ellipsoid_semi_axes_gradient_is_finite_where_the_axis_is_infinite():
    # d/dα α^(−1/2) = −α^(−3/2)/2 for α > 0; an infinite axis (α <= 0) has gradient 0, not NaN:
    # the inner where keeps 1/√α off α <= 0, where it (or its derivative) is NaN or inf
    alpha = jnp.array([-0.5, 0.0, 0.25, 1.0, 4.0])
    g = jax.grad(lambda a: jnp.sum(theory.ellipsoid_semi_axes(a)))(alpha)
    np.testing.assert_allclose(g, [0.0, 0.0, -4.0, -0.5, -0.0625], rtol=1e-12)
