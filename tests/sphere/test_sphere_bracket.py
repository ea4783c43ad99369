"""Brackets lower <= true distance <= attack (spheres.sphere.bracket): the statistics by hand, the
exact end for quadratic nets against the theory and the attack, the certified end for ReLU nets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
import theory
from spheres.sphere import bracket, models
from spheres.sphere import data as sdata
from spheres.sphere.manifold import per_example_logit


def test_bracket_stats_by_hand():
    lower = np.array([1.0, 0.5, 2.0, np.inf, 0.3])
    upper = np.array([1.1, 1.5, 2.0, 5.0, 0.0])
    found = np.array([True, True, True, False, False])
    start = np.array([False, False, False, False, True])
    b = bracket.bracket_stats(lower, upper, found, start, "exact")
    assert b["n"] == 5 and b["n_correct"] == 4
    assert b["lower_mean"] is None and b["no_error"] == 1          # one point has no error at all
    assert b["upper_mean"] is None and b["attack_failed"] == 1     # the attack failed on that point
    assert b["upper_mean_found"] == pytest.approx((1.1 + 1.5 + 2.0) / 3)
    ratios = np.array([1.1, 3.0, 1.0])
    assert b["ratio_mean"] == pytest.approx(ratios.mean()) and b["ratio_max"] == pytest.approx(3.0)
    # tight (≤ 2×) among the 3 correct points with a finite lower end: 1.1× and 1.0×
    assert b["fraction_tight"] == pytest.approx(2 / 3)
    assert b["violations"] == 0
    # an attack below the lower end beyond the tolerance is a violation; at the tolerance it is not
    v = bracket.bracket_stats([1.0, 1.0], [1 - 2 * bracket.VIOLATION_RTOL, 1 - 0.5 * bracket.VIOLATION_RTOL],
                              [True, True], [False, False], "certified")
    assert v["violations"] == 1 and v["lower_mean"] == 1.0 and v["upper_mean"] < 1.0
    assert "VIOLATIONS" in bracket.format_bracket(v)


def test_format_bracket_cases():
    exact = bracket.bracket_stats([0.2, 0.4], [0.2, 0.41], [True, True], [False, False], "exact")
    assert bracket.format_bracket(exact).startswith("exact 0.3000 ≤ d(E) ≤ attack 0.3050")
    none = bracket.bracket_stats([np.inf], [1.0], [False], [False], "exact")
    assert "no error on this set" in bracket.format_bracket(none)
    assert "VIOLATION" in bracket.format_bracket(bracket.bracket_stats([np.inf], [1.0], [True], [False], "exact"))
    failed = bracket.bracket_stats([0.1, 0.2], [0.3, 0.9], [True, False], [False, False], "certified")
    assert "attack failed on 1" in bracket.format_bracket(failed)
    assert bracket.format_bracket(None) == "-"


def _imperfect_quadratic(d=8, h=16, seed=0):
    """A QuadraticNet whose α straddle 1 (on-manifold errors exist on the inner sphere)."""
    model = models.QuadraticNet(hidden=h)
    v = model.init(jax.random.key(seed), jnp.zeros((1, d)))
    W = np.asarray(jax.random.normal(jax.random.key(seed + 1), (h, d))) / np.sqrt(h)
    with jax.enable_x64(True):
        alpha = np.asarray(theory.alphas(W.astype(np.float64), 1.0, -1.0))
    scale = 1.0 / np.median(alpha)                                    # median α at 1: errors on both sides
    return model, {"params": {"W": jnp.asarray(W * np.sqrt(scale), jnp.float32), "w": jnp.float32(1.0),
                              "b": jnp.float32(-1.0)}}


@pytest.mark.parametrize("on_manifold", [True, False])
def test_quadratic_lower_end_is_the_exact_distance_and_the_attack_never_beats_it(on_manifold):
    model, v = _imperfect_quadratic()
    x = sdata.sample_sphere(jax.random.key(3), 64, 8, 1.0)
    lower, kind = bracket.lower_bounds(model, v, x, 0, on_manifold=on_manifold)
    assert kind == "exact" == bracket.bound_kind(model, v)
    with jax.enable_x64(True):
        alpha, U = theory.alphas_and_axes_from_variables(jax.tree.map(lambda a: np.asarray(a, np.float64), v))
        ref = theory.exact_nearest_error(alpha, U, np.asarray(x, np.float64), on_manifold=on_manifold,
                                         y=np.zeros(64, np.int32))
    np.testing.assert_allclose(lower, np.asarray(ref.distance), rtol=1e-12)
    f = per_example_logit(model)
    y = jnp.zeros((64,), jnp.int32)
    if on_manifold:
        res = attacks.sphere_pgd(f, x, y, step_size=0.02, num_steps=400, mode="nearest", params=v)
    else:
        res = attacks.nearest_error_l2(f, x, y, max_radius=2.0, params=v)
    stats, _ = bracket.bracket(model, v, x, 0, res, on_manifold=on_manifold)
    assert stats["violations"] == 0
    # a good attack is close to optimal on this easy problem (observed ≤ 1.01 mean)
    assert stats["ratio_mean"] is not None and stats["ratio_mean"] < 1.05


def test_quadratic_with_nonnegative_b_has_the_trivial_lower_end():
    model, v = _imperfect_quadratic()
    v = {"params": {**v["params"], "b": jnp.float32(0.5)}}
    lower, kind = bracket.lower_bounds(model, v, jnp.ones((3, 8)) / np.sqrt(8), 0)
    assert kind == "none" and np.all(lower == 0)
    assert bracket.bound_kind(model, v) == "none"
    assert bracket.exact_d_E(v, n=10, key=jax.random.key(0)) is None


def test_exact_d_E_matches_the_theory_and_the_same_point_lower_ends():
    model, v = _imperfect_quadratic()
    key = jax.random.key(5)
    d_E = bracket.exact_d_E(v, n=4000, key=key)
    with jax.enable_x64(True):
        alpha = theory.alphas_from_variables(jax.tree.map(lambda a: np.asarray(a, np.float64), v))
        ref = float(theory.exact_mean_distance(alpha, n=4000, key=key).mean)
    assert d_E == pytest.approx(ref, rel=1e-12)
    # the same quantity from per-point lower ends on fresh points: equal within sampling noise
    x = sdata.sample_sphere(jax.random.key(6), 4000, 8, 1.0)
    lower, _ = bracket.lower_bounds(model, v, x, 0)
    se = lower.std() / np.sqrt(lower.size)
    assert abs(lower.mean() - d_E) < 5 * se + 1e-12


def _relu(d=6, widths=(16, 16), seed=0):
    model = models.SphereMLP(features=widths)
    v = model.init(jax.random.key(seed), jnp.zeros((2, d)), train=False)
    return model, v


def test_relu_certified_end_is_below_dense_sampling_in_d2():
    """d = 2: the nearest on-manifold error is found by sampling the circle densely (1e5 angles:
    resolution 6e-5 in arc length); the certified radius never exceeds it."""
    model, v = _relu(d=2, widths=(8, 8), seed=1)
    th = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    circle = np.stack([np.cos(th), np.sin(th)], 1).astype(np.float32)
    cls = np.asarray(model.apply(v, circle, train=False) > 0)
    assert cls.any() and (~cls).any(), "the test net must have both classes on the circle"
    idx = np.arange(0, 100_000, 5000)
    x = circle[idx]
    labels = cls[idx].astype(int)
    for label in (0, 1):
        pts = x[labels == label]
        if not len(pts):
            continue
        lower, kind = bracket.lower_bounds(model, v, pts, label, on_manifold=True)
        assert kind == "certified" == bracket.bound_kind(model, v)
        errors = circle[cls != bool(label)]
        nearest = np.min(np.linalg.norm(pts[:, None, :] - errors[None], axis=2), axis=1)
        assert np.all(lower <= nearest + 1e-4), (lower, nearest)


def test_relu_beyond_the_budget_gets_the_trivial_end(monkeypatch):
    model, v = _relu()
    layers = theory.layers_from_sphere_mlp(v)
    assert bracket.certify_flops(layers, 8) > 0
    monkeypatch.setattr(bracket, "CERTIFY_MAX_FLOPS", 1.0)
    lower, kind = bracket.lower_bounds(model, v, sdata.sample_sphere(jax.random.key(0), 4, 6, 1.0), 0)
    assert kind == "none" and np.all(lower == 0)
    assert bracket.bound_kind(model, v) == "none"
    b = bracket.bracket_stats(lower, np.ones(4), np.ones(4, bool), np.zeros(4, bool), kind)
    assert bracket.format_bracket(b).startswith("no lower bound")


def test_certify_flops_of_the_paper_nets():
    """The budget admits ReLU.w1000.2 at d = 500 and refuses ReLU.w2000.8 (module constants)."""
    def layers(d, widths):
        sizes = [d, *widths, 1]
        return [(np.zeros((b, a)), np.zeros(b)) for a, b in zip(sizes[:-1], sizes[1:])]

    assert bracket.certify_flops(layers(500, (1000, 1000)), 8) < bracket.CERTIFY_MAX_FLOPS
    assert bracket.certify_flops(layers(500, (2000,) * 8), 8) > bracket.CERTIFY_MAX_FLOPS


def test_warm_started_certificates_fall_back_to_a_cold_search_for_outliers(monkeypatch):
    """The pilot's median sits far above the other points' radii: 3 warm steps of ×1.15 cannot reach
    them (their warm radii fall below half the median), so they are searched again cold and end at
    least as high as a cold 8-step search alone."""
    model, v = _relu(d=2, widths=(8, 8), seed=1)
    layers = theory.layers_from_sphere_mlp(v)
    th = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([np.cos(th), np.sin(th)], 1).astype(np.float32)
    label = int(np.bincount(np.asarray(model.apply(v, circle, train=False) > 0).astype(int)).argmax())
    pts = circle[np.asarray(model.apply(v, circle, train=False) > 0) == bool(label)]
    cold = np.asarray(theory.certify_l2(layers, pts, jnp.full((len(pts),), label), on_manifold=True).radius)
    order = np.argsort(cold)
    small = order[(cold[order] > 0)][:24]
    x = np.concatenate([pts[order[-8:]], pts[small]])
    monkeypatch.setattr(bracket, "CERTIFY_PILOT", 8)
    got = bracket._certify(layers, x, label, on_manifold=True, steps=8, block=32)
    init = float(np.median(cold[order[-8:]]))
    warm_only = np.asarray(theory.certify_l2(layers, x[8:], jnp.full((24,), label), on_manifold=True, steps=3,
                                             init=init).radius)
    assert np.any(warm_only < 0.5 * cold[small])           # the warm search alone misses these points
    # the same float32 computation repeated: equal up to XLA's reduction order
    np.testing.assert_array_less(cold[small] * (1 - 1e-5), got[8:])
    np.testing.assert_allclose(got[:8], cold[order[-8:]], rtol=1e-5)
