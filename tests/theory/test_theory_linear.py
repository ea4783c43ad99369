"""theory.linear: Goodfellow's linear closed forms against brute force."""

import itertools
import math

import jax
import numpy as np
import pytest

import theory


pytestmark = pytest.mark.usefixtures("float64")


def corners(m, eps):
    return eps * np.array(list(itertools.product((-1.0, 1.0), repeat=m)))


def test_fgsm_logit_change_is_the_max_over_the_ball():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(7)
    w[2] = 0.0
    eps = 0.3
    # L∞: a linear function's max over the box is at a corner; brute force over all 2⁷ corners
    brute = np.max(corners(7, eps) @ w)
    # tolerance: float64 summation order
    assert float(theory.fgsm_linear_logit_change(w, eps, "linf")) == pytest.approx(brute, rel=1e-13)
    eta = theory.fgsm_linear_perturbation(w, eps, "linf")
    assert float(eta @ w) == pytest.approx(brute, rel=1e-13)
    # L2: Cauchy–Schwarz, attained at eps·w/‖w‖; no random point of the sphere does better
    u = rng.standard_normal((20000, 7))
    u = eps * u / np.linalg.norm(u, axis=1, keepdims=True)
    l2 = float(theory.fgsm_linear_logit_change(w, eps, "l2"))
    assert l2 == pytest.approx(eps * np.linalg.norm(w), rel=1e-13)
    assert np.max(u @ w) <= l2 + 1e-12
    assert float(theory.fgsm_linear_perturbation(w, eps, "l2") @ w) == pytest.approx(l2, rel=1e-13)
    # batched weights and eps
    W = rng.standard_normal((3, 7))
    np.testing.assert_allclose(theory.fgsm_linear_logit_change(W, np.array([0.1, 0.2, 0.3])),
                               np.array([0.1, 0.2, 0.3]) * np.abs(W).sum(1), rtol=1e-13)
    with pytest.raises(ValueError):
        theory.fgsm_linear_logit_change(w, eps, "l1")


def test_min_l2_distance_linear_is_attained_and_minimal():
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal(5), 0.4
    x = rng.standard_normal((100, 5))
    dist = np.asarray(theory.min_l2_distance_linear(w, b, x))
    r = np.asarray(theory.min_l2_perturbation_linear(w, b, x))
    # the perturbation lands on the hyperplane and has exactly that length (tolerance: rounding)
    np.testing.assert_allclose((x + r) @ w + b, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), dist, rtol=1e-12)
    # no perturbation of length 0.999·dist in 2,000 random directions flips the sign
    u = rng.standard_normal((2000, 5))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for xi, di in zip(x[:10], dist[:10]):
        s0 = np.sign(xi @ w + b)
        assert np.all(np.sign((xi + 0.999 * di * u) @ w + b) == s0)
    assert float(theory.min_l2_distance_linear(np.zeros(3), 1.0, np.ones(3))) == math.inf


def test_min_l2_distance_multiclass_matches_a_grid_search():
    # 2-D, 4 classes: brute force the nearest point of another class on a fine grid
    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((4, 2)), rng.standard_normal(4)
    f = lambda p: np.argmax(p @ W.T + b, axis=-1)             # noqa: E731
    for x in rng.standard_normal((5, 2)):
        dist = float(theory.min_l2_distance_multiclass(W, b, x))
        y = f(x)
        assert dist >= 0
        span = 2 * dist + 0.1
        g = np.linspace(-span, span, 801)
        P = x + np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        other = f(P) != y
        brute = np.min(np.linalg.norm(P[other] - x, axis=1))
        # tolerance: the grid spacing (a point within h/√2 of the true nearest point exists)
        h = g[1] - g[0]
        assert dist - 1e-12 <= brute <= dist + h, (dist, brute)


def test_min_l2_distance_multiclass_labels_batches_and_misclassification():
    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    x = rng.standard_normal((6, 4))
    z = x @ W.T + b
    pred = z.argmax(1)
    d_pred = theory.min_l2_distance_multiclass(W, b, x)
    np.testing.assert_allclose(d_pred, theory.min_l2_distance_multiclass(W, b, x, pred), rtol=1e-14)
    wrong = (pred + 1) % 3
    assert np.all(np.asarray(theory.min_l2_distance_multiclass(W, b, x, wrong)) <= 0)
    # two classes reduce to the binary formula with w = W₀ − W₁
    W2, b2 = W[:2], b[:2]
    np.testing.assert_allclose(theory.min_l2_distance_multiclass(W2, b2, x),
                               theory.min_l2_distance_linear(W2[0] - W2[1], b2[0] - b2[1], x), rtol=1e-12)
    one = jax.jit(lambda xi: theory.min_l2_distance_multiclass(W, b, xi))
    np.testing.assert_allclose(jax.vmap(one)(x), d_pred, rtol=1e-14)


@pytest.mark.parametrize("m", [1, 3, 6])
def test_adversarial_logistic_loss_equals_brute_force_inner_max(m):
    rng = np.random.default_rng(m)
    w = rng.standard_normal(m)
    if m > 1:
        w[0] = 0.0                                              # a zero weight: any η₀ is optimal
    b, eps = 0.2, 0.25
    x = rng.standard_normal((8, m))
    y = rng.choice([-1.0, 1.0], 8)
    closed = np.asarray(theory.adversarial_logistic_loss(w, b, x, y, eps))
    etas = corners(m, eps)
    brute = np.array([np.max(np.logaddexp(0, -yi * ((xi + etas) @ w + b))) for xi, yi in zip(x, y)])
    # tolerance: float64 rounding of softplus
    np.testing.assert_allclose(closed, brute, rtol=1e-13)
    # ε = 0 is the ordinary logistic loss
    np.testing.assert_allclose(theory.adversarial_logistic_loss(w, b, x, y, 0.0),
                               theory.logistic_loss(w, b, x, y), rtol=1e-14)


def test_adversarial_logistic_loss_gradient():
    rng = np.random.default_rng(7)
    w, b, eps = rng.standard_normal(5), -0.3, 0.1
    x, y = rng.standard_normal((4, 5)), np.array([1.0, -1.0, -1.0, 1.0])
    dw, db = theory.adversarial_logistic_loss_grad(w, b, x, y, eps)
    assert dw.shape == (4, 5) and db.shape == (4,)
    gw, gb = jax.vmap(jax.grad(theory.adversarial_logistic_loss, argnums=(0, 1)),
                      in_axes=(None, None, 0, 0, None))(w, b, x, y, eps)
    np.testing.assert_allclose(dw, gw, rtol=1e-12)             # tolerance: same formula, two evaluations
    np.testing.assert_allclose(db, gb, rtol=1e-12)
    # central finite differences (w has no zeros, so the loss is smooth here)
    h = 1e-6
    for j in range(5):
        e = np.zeros(5)
        e[j] = h
        fd = (theory.adversarial_logistic_loss(w + e, b, x, y, eps)
              - theory.adversarial_logistic_loss(w - e, b, x, y, eps)) / (2 * h)
        # tolerance: O(h²) truncation + O(1e-16/h) rounding ≈ 1e-9
        np.testing.assert_allclose(fd, dw[:, j], atol=1e-8)


def test_labels_are_validated():
    with pytest.raises(ValueError):
        theory.adversarial_logistic_loss(np.ones(2), 0.0, np.ones((1, 2)), np.array([0.0]), 0.1)
    with pytest.raises(ValueError):
        theory.logistic_loss(np.ones(2), 0.0, np.ones((1, 2)), np.array([2]))


# --- added for docs/mutation.md (issue 26): edge cases that mutants of the guards got through ---

def test_eps_must_be_a_finite_nonnegative_radius():
    w, x, y = np.array([1.0, -2.0]), np.ones((1, 2)), np.array([1.0])
    calls = [lambda e: theory.fgsm_linear_logit_change(w, e),
             lambda e: theory.fgsm_linear_perturbation(w, e, "l2"),
             lambda e: theory.adversarial_logistic_loss(w, 0.0, x, y, e),
             lambda e: theory.adversarial_logistic_loss_grad(w, 0.0, x, y, e)]
    for f in calls:
        for bad in (-0.1, -1e-300, np.nan, np.inf, np.array([0.1, -0.1])):
            with pytest.raises(ValueError):
                f(bad)
    # eps = 0 is a valid radius (no perturbation), and eps >= 1 is not special: exact values
    assert float(theory.fgsm_linear_logit_change(w, 0.0)) == 0.0
    assert float(theory.fgsm_linear_logit_change(w, 2.0)) == 6.0            # 2 · ‖w‖₁, exact in binary
    np.testing.assert_array_equal(theory.fgsm_linear_perturbation(w, 0.0), [0.0, 0.0])


def test_l2_perturbation_for_short_and_zero_weights():
    # ‖w‖₂ = 0.5 < 1: the perturbation is eps·w/‖w‖ = 0.2·(0.6, 0.8), of length exactly eps
    w = np.array([0.3, 0.4])
    eta = np.asarray(theory.fgsm_linear_perturbation(w, 0.2, "l2"))
    # tolerance: a few float64 roundings
    np.testing.assert_allclose(eta, [0.12, 0.16], rtol=1e-14)
    # w = 0: every direction is optimal; the documented choice is the zero vector (not NaN)
    np.testing.assert_array_equal(theory.fgsm_linear_perturbation(np.zeros(3), 0.2, "l2"), np.zeros(3))
    np.testing.assert_allclose(theory.fgsm_linear_logit_change(w, 0.2, "l2"), 0.1, rtol=1e-14)


def test_min_l2_distance_linear_with_zero_weights():
    # w = 0, b = 0: every x lies on the "hyperplane" (logit 0), distance 0; w = 0, b ≠ 0: never flips
    assert float(theory.min_l2_distance_linear(np.zeros(3), 0.0, np.ones(3))) == 0.0
    assert float(theory.min_l2_distance_linear(np.zeros(3), -2.0, np.ones(3))) == math.inf
    # the double `where` keeps the gradient finite there: the distance is constant in x (0 or inf),
    # so its gradient is exactly 0, not NaN from the unselected |logit|/0 branch
    for b in (0.5, 0.0):
        g = jax.grad(lambda x: theory.min_l2_distance_linear(np.zeros(3), b, x))(np.ones(3))
        np.testing.assert_array_equal(g, np.zeros(3))
    # and for ‖w‖ < 1 the distance is |logit|/‖w‖ exactly: w = (0.3, 0.4), x = (1, 1), b = 0 → 0.7/0.5
    assert float(theory.min_l2_distance_linear(np.array([0.3, 0.4]), 0.0, np.ones(2))) == pytest.approx(1.4, rel=1e-14)


def test_min_l2_distance_multiclass_with_coincident_classes():
    # classes 0 and 2 have the same weight row; their facet hyperplane does not exist (W₀ = W₂)
    W = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    x = np.array([0.25, 3.0])
    # same bias too: z₀ = z₂ exactly (gap 0), the facet counts as +inf, so only class 1 matters:
    # (z₀ − z₁)/‖W₀ − W₁‖ = 0.5/2 = 0.25 (exact)
    assert float(theory.min_l2_distance_multiclass(W, np.zeros(3), x, 0)) == 0.25
    # class 0 beats class 2 by a constant bias: never reachable, +inf; class 2 below class 0: −inf
    b = np.array([0.0, 0.0, -1.0])
    assert float(theory.min_l2_distance_multiclass(W, b, x, 0)) == 0.25
    assert float(theory.min_l2_distance_multiclass(W, b, x, 2)) == -math.inf
    # the gradient in x is that of the nearest real facet, (W₀ − W₁)/‖W₀ − W₁‖ = (1, 0): the absent
    # facets (W₀ = W₂, constant gap) must not leak a NaN from their unselected gap/‖·‖ branch
    g = jax.grad(lambda p: theory.min_l2_distance_multiclass(W, np.zeros(3), p, 0))(x)
    np.testing.assert_allclose(g, [1.0, 0.0], rtol=1e-15)


def test_min_l2_distance_multiclass_validates_labels():
    rng = np.random.default_rng(4)
    W, b, x = rng.standard_normal((3, 2)), rng.standard_normal(3), rng.standard_normal((2, 2))
    for bad in (np.array([0, 3]), np.array([-1, 0]), np.array([0.0, 1.0]), np.array([2, 5])):
        with pytest.raises(ValueError):
            theory.min_l2_distance_multiclass(W, b, x, bad)
    for bad_W in (W[0], W[None]):                                      # W must be (K, m): 1-D, 3-D
        with pytest.raises(ValueError):
            theory.min_l2_distance_multiclass(bad_W, b, x)
    # the largest and smallest valid labels are accepted
    assert np.asarray(theory.min_l2_distance_multiclass(W, b, x, np.array([2, 0]))).shape == (2,)


def test_adversarial_logistic_loss_grad_with_a_zero_weight():
    # sign(0) = 0: a zero weight gets only the data term, ∂/∂w_j = −σ(u) y x_j (a finite subgradient)
    from scipy.special import expit
    w, b, eps = np.array([0.0, 1.5, -0.5]), 0.2, 0.3
    x, y = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0]]), np.array([1.0, -1.0])
    u = eps * np.abs(w).sum() - y * (x @ w + b)
    dw, db = theory.adversarial_logistic_loss_grad(w, b, x, y, eps)
    ref = expit(u)[:, None] * (eps * np.sign(w) - y[:, None] * x)
    # tolerance: float64 rounding of the sigmoid
    np.testing.assert_allclose(dw, ref, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(dw)[:, 0], -expit(u) * y * x[:, 0], rtol=1e-14)
    np.testing.assert_allclose(db, -expit(u) * y, rtol=1e-14)
