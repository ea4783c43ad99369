"""Confident models in float32: the cross-entropy gradient underflows to exactly 0, and an attack that
takes sign(∇J) or ∇J/‖∇J‖ from it does nothing. The direction-only attacks use a rescaled gradient
(`attacks._base.ascent_objective`) that points the same way and cannot underflow."""

import jax
import jax.numpy as jnp
import numpy as np

import attacks
from attacks._base import adversarial_objective, ascent_objective

D = 40


def test_fgsm_moves_a_saturated_logistic_regression_by_eps_l1():
    rng = np.random.default_rng(0)
    w = jnp.asarray(10 + 5 * rng.normal(size=D), jnp.float32)    # logits ≈ 200 on [0, 1]^D
    f = lambda x: x @ w
    x = jnp.asarray(rng.uniform(size=(6, D)), jnp.float32)
    y = (jax.vmap(f)(x) > 0).astype(jnp.int32)
    z = jax.vmap(f)(x)
    plain = jax.vmap(jax.grad(lambda v, t: adversarial_objective(f(v), t)))(x, y)
    assert np.all(np.abs(np.asarray(z)) > 110) and np.all(np.asarray(plain) == 0)   # the trap
    res = attacks.fgsm(f, x, y, eps=0.25)
    dz = jax.vmap(f)(res.x_adv) - z
    # the closed form (theory.fgsm_linear_logit_change): |Δz| = ε‖w‖₁, toward the other class;
    # float32 sums of 40 terms of size ~5: 1e-5 relative
    np.testing.assert_allclose(np.abs(dz), 0.25 * float(jnp.abs(w).sum()), rtol=1e-5)
    assert np.all(np.sign(np.asarray(dz)) == -np.sign(np.asarray(z)))


def test_rescaled_softmax_gradient_points_like_the_exact_one():
    """Logit gaps of 120-600: float32's plain gradient is exactly 0; the float32 rescaled gradient
    has the direction of an independent float64 formula (cos ≥ 1 − 1e-6: float32 rounding of unit
    vectors in R^40)."""
    rng = np.random.default_rng(1)
    W = rng.normal(size=(D, 5)) * 3
    W[:, 0] += 8                                   # class 0 wins by ≈ 0.5·D·8 = 160 on [0, 1]^D
    x = rng.uniform(size=(8, D))
    y = np.argmax(x @ W, axis=1)
    gaps = np.sort(x @ W, axis=1)[:, -1] - np.sort(x @ W, axis=1)[:, -2]
    keep = (gaps > 120) & (gaps < 600)
    assert keep.sum() >= 3, gaps
    x, y = x[keep], y[keep]
    f32 = lambda v: v @ jnp.asarray(W, jnp.float32)
    xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y)
    plain = jax.vmap(jax.grad(lambda v, t: adversarial_objective(f32(v), t)))(xs, ys)
    assert np.all(np.asarray(plain) == 0)
    safe = np.asarray(jax.vmap(jax.grad(lambda v, t: ascent_objective(f32(v), t)))(xs, ys), np.float64)
    # Reference: CE = log(1 + S) with S = Σ_{k≠y} exp(z_k − z_y) is increasing in log S, so ∇CE
    # points along ∇ log S = ∇ logsumexp_{k≠y}(z_k − z_y), which float64 computes without the
    # cancellation in p_y − 1 (that difference is exactly 0 in float64 too at these gaps).
    def log_s(v, t):
        z = v @ jnp.asarray(W, jnp.float64)
        return jax.nn.logsumexp(jnp.where(jnp.arange(5) == t, -jnp.inf, z - z[t]))

    with jax.enable_x64(True):
        exact = np.asarray(jax.vmap(jax.grad(log_s))(jnp.asarray(x, jnp.float64), jnp.asarray(y)))
    assert np.all(np.linalg.norm(exact, axis=1) > 0)
    cos = np.sum(safe * exact, 1) / np.linalg.norm(safe, axis=1) / np.linalg.norm(exact, axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-6)
    # and FGSM-L2 steps along it by exactly ε
    res = attacks.fgsm(f32, xs, ys, eps=0.1, norm="l2")
    np.testing.assert_allclose(np.linalg.norm(np.asarray(res.x_adv - xs), axis=1), 0.1, rtol=1e-5)


def test_rescaled_gradient_is_a_positive_multiple_of_the_plain_one():
    """Where nothing underflows, the two gradients differ by a positive per-example factor, for
    binary and 4-class models, targeted and untargeted (float32: direction to 1e-5)."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(10, D)), jnp.float32)
    for k in (1, 4):
        W = jnp.asarray(rng.normal(size=(D, k)) * 0.2, jnp.float32)
        f = (lambda v: (v @ W)[0]) if k == 1 else (lambda v: v @ W)
        y = jnp.asarray(rng.integers(0, max(k, 2), size=10))
        for targeted in (False, True):
            a = jax.vmap(jax.grad(lambda v, t: adversarial_objective(f(v), t, targeted=targeted)))(x, y)
            b = jax.vmap(jax.grad(lambda v, t: ascent_objective(f(v), t, targeted=targeted)))(x, y)
            va = jax.vmap(lambda v, t: adversarial_objective(f(v), t, targeted=targeted))(x, y)
            vb = jax.vmap(lambda v, t: ascent_objective(f(v), t, targeted=targeted))(x, y)
            np.testing.assert_array_equal(va, vb)                       # same value
            na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
            cos = np.sum(np.asarray(a) * np.asarray(b), 1) / na / nb
            np.testing.assert_allclose(cos, 1.0, atol=1e-5)
