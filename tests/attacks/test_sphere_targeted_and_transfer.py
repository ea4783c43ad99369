"""`sphere_pgd` targeted with the margin loss, and targeted `transfer_error_rates`, against hand
solutions on a linear 3-class model ``z = x`` (logits are the coordinates) in R³.

For target t the targeted margin objective is ``m_t(x) = z_t − max_{j≠t} z_j``; the maximum and
the boundary are found by hand in each test.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks


def linear3(x):
    return x                                   # per-example logits = coordinates


START = jnp.asarray([[1.0, 0.9, 0.0]], jnp.float32)
START = START / jnp.linalg.norm(START, axis=1, keepdims=True)    # class 0, class 1 close behind


def far_class_1(x):
    """Logits (x₀, −10, x₂): class 1 can never win on the unit sphere, and for target 2 the
    competitor is always class 0, so m₂ = x₂ − x₀ is smooth (no kink of the max)."""
    return jnp.stack([x[0], -10.0 + 0 * x[1], x[2]])


def test_worst_case_targeted_margin_reaches_the_maximum():
    # maximise x₂ − x₀ on ‖x‖ = 1: the point (−1, 0, 1)/√2, value √2 (Cauchy–Schwarz).
    res = attacks.sphere_pgd(far_class_1, START, jnp.asarray([2]), step_size=0.1, num_steps=200,
                             mode="worst_case", targeted=True, loss="margin")
    # tolerance: float32 on the sphere; the step-halving ascent converges to ~1e-6 in the value
    assert float(res.loss[0]) == pytest.approx(math.sqrt(2), abs=1e-4)
    np.testing.assert_allclose(res.x_adv[0], [-1 / math.sqrt(2), 0.0, 1 / math.sqrt(2)], atol=1e-2)
    assert bool(res.success[0]) and int(jnp.argmax(far_class_1(res.x_adv[0]))) == 2
    assert float(jnp.linalg.norm(res.x_adv[0])) == pytest.approx(1.0, abs=1e-5)
    # target 1 is out of reach: the attack maximises −10 − max(x₀, x₂), at most −10 + 1/√2 (at
    # x₀ = x₂ = −1/√2; the kink of the max stalls the ascent ~0.03 short of it) and fails
    out = attacks.sphere_pgd(far_class_1, START, jnp.asarray([1]), step_size=0.1, num_steps=200,
                             mode="worst_case", targeted=True, loss="margin")
    assert not bool(out.success[0])
    assert -10 + 1 / math.sqrt(2) - 0.1 < float(out.loss[0]) <= -10 + 1 / math.sqrt(2) + 1e-5
    # monotone ascent: never below the start's objective −10 − max(START₀, START₂)
    assert float(out.loss[0]) >= -10 - float(START[0, 0])


def test_nearest_targeted_margin_stops_just_past_the_target_boundary():
    # From START (class 0, class 1 close) toward target 2: the untargeted attack would stop in
    # class 1; the targeted one must reach {x₂ > max(x₀, x₁)} and bisection leaves it within the
    # arc step of the boundary: 0 < m₂(x_adv) ≤ step_size·(1 + slack).
    step = 0.05
    res = attacks.sphere_pgd(linear3, START, jnp.asarray([2]), step_size=step, num_steps=200,
                             mode="nearest", targeted=True, loss="margin", refine_steps=20)
    x = np.asarray(res.x_adv[0])
    assert bool(res.success[0]) and int(np.argmax(x)) == 2
    m = x[2] - max(x[0], x[1])
    assert 0 < m <= 2 * step
    assert float(res.loss[0]) == pytest.approx(m, abs=1e-6)        # the targeted margin objective
    assert float(res.distance[0]) == pytest.approx(float(np.linalg.norm(x - np.asarray(START[0]))), abs=1e-6)
    untargeted = attacks.sphere_pgd(linear3, START, jnp.asarray([0]), step_size=step, num_steps=200,
                                    mode="nearest", loss="margin")
    assert int(jnp.argmax(untargeted.x_adv[0])) == 1
    assert float(untargeted.distance[0]) < float(res.distance[0])


def test_transfer_targeted_counts_hits_of_the_target():
    x = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.1, 0.9]], jnp.float32)
    target = jnp.asarray([0, 2, 2, 1])
    swap = lambda v: v[jnp.asarray([1, 0, 2])]          # a model that swaps classes 0 and 1
    res = attacks.transfer_error_rates(x, target, {"id": linear3, "swap": swap}, targeted=True)
    # predictions: id -> 0, 1, 2, 2; swap -> 1, 0, 2, 2
    np.testing.assert_array_equal(res.predictions["id"], [0, 1, 2, 2])
    np.testing.assert_array_equal(res.predictions["swap"], [1, 0, 2, 2])
    np.testing.assert_array_equal(res.errors["id"], [True, False, True, False])      # pred == target
    np.testing.assert_array_equal(res.errors["swap"], [False, False, True, False])
    assert float(res.error_rate["id"]) == pytest.approx(0.5)
    assert float(res.error_rate["swap"]) == pytest.approx(0.25)
    # untargeted: pred != y
    un = attacks.transfer_error_rates(x, target, {"id": linear3}, targeted=False)
    np.testing.assert_array_equal(un.errors["id"], [False, True, False, True])
    # the mask restricts the rate (not the per-example arrays)
    masked = attacks.transfer_error_rates(x, target, {"id": linear3}, targeted=True,
                                          mask=jnp.asarray([True, True, False, False]))
    assert float(masked.error_rate["id"]) == pytest.approx(0.5)
    assert masked.errors["id"].shape == (4,)
    none = attacks.transfer_error_rates(x, target, {"id": linear3}, mask=jnp.zeros(4, bool))
    assert float(none.error_rate["id"]) == 0.0                     # empty mask: 0, not nan


def test_transfer_from_a_targeted_attack():
    # A targeted PGD on the identity model toward class 2, judged on a model that agrees on class 2
    # and on one that maps class 2 to class 0: the target hit rate transfers to the first only.
    key = jax.random.key(0)
    x = jax.random.normal(key, (16, 3)) * 0.1 + jnp.asarray([1.0, 0.0, 0.0])
    t = jnp.full((16,), 2)
    adv = attacks.pgd(linear3, x, t, eps=2.0, num_steps=20, targeted=True, random_start=False)
    assert bool(jnp.all(adv.success))
    rot = lambda v: v[jnp.asarray([2, 0, 1])]           # class 2's logit moves to position 0
    res = attacks.transfer_error_rates(adv.x_adv, t, {"id": linear3, "rot": rot}, targeted=True,
                                       mask=adv.success)
    assert float(res.error_rate["id"]) == 1.0
    assert float(res.error_rate["rot"]) == 0.0
    np.testing.assert_array_equal(res.predictions["rot"], jnp.zeros(16, jnp.int32))


# --------------------------------------------------------------------------- predict in chunks

def _counting_model(w):
    """A 3-class linear model that counts its traces: one per input shape `predict` compiles."""
    traces = []

    def f(v):
        traces.append(v.shape)
        return w @ v
    return f, traces


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 11, 15, None])
def test_predict_in_chunks_equals_one_call_and_compiles_one_shape(batch_size):
    """Chunks are padded to ``batch_size`` rows, so every chunk has one shape and the model is
    traced once per call, whatever the remainder (11 rows in chunks of 4: 4, 4, 3); predictions
    equal the unchunked ones row for row. A second batch of another size (6 rows: 4, 2) reuses the
    same compiled shape when chunked."""
    w = jax.random.normal(jax.random.key(0), (3, 5))
    x = jax.random.normal(jax.random.key(1), (11, 5))
    ref = np.argmax(np.asarray(x @ w.T), axis=1)
    f, traces = _counting_model(w)
    got = attacks.predict(f, x, batch_size=batch_size)
    np.testing.assert_array_equal(got, ref)
    assert got.shape == (11,) and len(traces) == 1, traces
    x6 = x[:6] * 2.0
    np.testing.assert_array_equal(attacks.predict(f, x6, batch_size=batch_size), ref[:6])
    chunked = batch_size is not None and batch_size < 6
    assert len(traces) == (1 if chunked else 2), (batch_size, traces)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_predict_batch_size_is_validated_even_when_larger_than_the_batch(bad):
    f, _ = _counting_model(jnp.eye(3, 5))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        attacks.predict(f, jnp.ones((2, 5)), batch_size=bad)


def test_transfer_mask_must_be_one_flag_per_example():
    """A ``(B, 1)`` mask would broadcast against ``(B,)`` errors into a ``(B, B)`` table and give a
    wrong rate silently; it, and a mask of the wrong length, are refused."""
    f, _ = _counting_model(jnp.eye(3, 5))
    x, y = jnp.ones((4, 5)), jnp.zeros(4, jnp.int32)
    for mask in (jnp.ones((4, 1), bool), jnp.ones(5, bool), jnp.ones(3, bool)):
        with pytest.raises(ValueError, match="mask must have shape"):
            attacks.transfer_error_rates(x, y, {"m": f}, mask=mask)


def test_transfer_options_are_keyword_only_and_models_a_non_empty_mapping():
    f, _ = _counting_model(jnp.eye(3, 5))
    x, y = jnp.ones((4, 5)), jnp.zeros(4, jnp.int32)
    with pytest.raises(TypeError):
        attacks.predict(f, x, None, 2)                         # params and batch_size by name only
    with pytest.raises(TypeError):
        attacks.transfer_error_rates(x, y, {"m": f}, None)
    named = attacks.transfer_error_rates(x_adv=x, y=y, logit_fns={"m": f})   # the first three may be named
    np.testing.assert_array_equal(attacks.predict(logit_fn=f, x=x), named.predictions["m"])
    for bad in ({}, [f], f):
        with pytest.raises(ValueError, match="non-empty mapping"):
            attacks.transfer_error_rates(x, y, bad)


def test_transfer_rate_over_an_empty_mask_is_zero_not_nan():
    """A source attack that succeeded nowhere selects no example: the rate is 0 over 0 counted
    examples (``max(Σ mask, 1)`` in the denominator), never NaN; the per-example errors stay."""
    f, _ = _counting_model(jnp.eye(3, 5))
    x, y = jnp.ones((4, 5)), jnp.full(4, 2, jnp.int32)        # every prediction is class 0: all wrong
    res = attacks.transfer_error_rates(x, y, {"m": f}, mask=jnp.zeros(4, bool))
    assert float(res.error_rate["m"]) == 0.0 and bool(res.errors["m"].all())
    full = attacks.transfer_error_rates(x, y, {"m": f}, mask=jnp.ones(4, bool))
    one = attacks.transfer_error_rates(x, y, {"m": f}, mask=jnp.arange(4) == 2)
    assert float(full.error_rate["m"]) == float(one.error_rate["m"]) == 1.0     # over 4 and over 1


def test_predict_chunks_by_rows_whatever_the_feature_count():
    """Chunking compares batch_size with the number of ROWS: with 2 features and 11 rows, chunks of
    3 are still chunks (one compiled shape for 11 and for 6 rows), not one whole-batch call each."""
    w = jax.random.normal(jax.random.key(2), (3, 2))
    x = jax.random.normal(jax.random.key(3), (11, 2))
    f, traces = _counting_model(w)
    np.testing.assert_array_equal(attacks.predict(f, x, batch_size=3), np.argmax(np.asarray(x @ w.T), 1))
    attacks.predict(f, x[:6], batch_size=3)
    assert len(traces) == 1, traces


@pytest.mark.usefixtures("float64")
def test_sphere_nearest_refines_20_halvings_by_default_and_refuses_negative_refinement():
    # float64: the bisection's last halvings (α·2⁻²⁰ ≈ 5e-8 here) are below float32 resolution
    start = jnp.asarray(START, jnp.float64)
    kw = dict(step_size=0.05, num_steps=200, mode="nearest", loss="margin")
    default = attacks.sphere_pgd(linear3, start, jnp.asarray([0]), **kw)
    twenty = attacks.sphere_pgd(linear3, start, jnp.asarray([0]), refine_steps=20, **kw)
    nineteen = attacks.sphere_pgd(linear3, start, jnp.asarray([0]), refine_steps=19, **kw)
    np.testing.assert_array_equal(default.x_adv, twenty.x_adv)
    assert not np.array_equal(np.asarray(default.x_adv), np.asarray(nineteen.x_adv))
    assert bool(default.success[0])
    with pytest.raises(ValueError, match="refine_steps"):
        attacks.sphere_pgd(linear3, START, jnp.asarray([0]), refine_steps=-1, step_size=0.05, num_steps=10)


@pytest.mark.usefixtures("float64")
def test_sphere_nearest_bisection_lands_on_the_dyadic_grid_above_the_exact_crossing():
    """``nearest`` mode bisects the great-circle arc from the start to the first error point q over
    t ∈ [0, 1]: after K halvings it returns the point at t_K = ⌈t*·2^K⌉ / 2^K, the first grid point
    past the exact crossing t* of the boundary x₀ = x₁ of ``linear3`` (solved here by brentq on the
    same arc). A large step (0.3) overshoots, so t* is well inside (0, 1)."""
    from scipy import optimize

    start = np.asarray(START[0], np.float64)
    run = lambda k: np.asarray(attacks.sphere_pgd(linear3, jnp.asarray(start[None]), jnp.asarray([0]),   # noqa: E731
                                                  step_size=0.3, num_steps=50, refine_steps=k).x_adv[0])
    q = run(0)                                               # no halving: the first error point itself
    assert np.argmax(q) == 1
    angle = lambda a, b: math.atan2(np.linalg.norm(np.cross(a, b)), float(np.dot(a, b)))   # noqa: E731
    theta = angle(start, q)
    v = q - np.dot(q, start) * start
    v /= np.linalg.norm(v)
    on_arc = lambda t: math.cos(t * theta) * start + math.sin(t * theta) * v               # noqa: E731
    t_star = optimize.brentq(lambda t: on_arc(t)[1] - on_arc(t)[0], 0.0, 1.0, xtol=1e-15)
    assert 0.05 < t_star < 0.95
    for k in (1, 2, 3, 5, 8, 13, 20):
        x = run(k)
        t_k = angle(start, x) / theta
        assert t_k == pytest.approx(math.ceil(t_star * 2**k) / 2**k, abs=1e-9), k
        assert x[1] > x[0]                                    # still an error, just past the boundary


def test_sphere_refuses_zero_norm_rows_and_names_them_for_numpy_and_jax_input():
    x = np.asarray([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.3, 0.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    for xs in (x, jnp.asarray(x)):
        with pytest.raises(ValueError, match=r"zero norm in examples \[1, 3\]"):
            attacks.sphere_pgd(linear3, xs, jnp.asarray([0, 0, 2, 0]), step_size=0.1, num_steps=3)
    # the host (NumPy) and device (JAX) inputs take different norm paths to the same attack
    ok = x[[0, 2]]
    a = attacks.sphere_pgd(linear3, ok, jnp.asarray([0, 2]), step_size=0.05, num_steps=50)
    b = attacks.sphere_pgd(linear3, jnp.asarray(ok), jnp.asarray([0, 2]), step_size=0.05, num_steps=50)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(a.x_adv), axis=1), np.linalg.norm(ok, axis=1), rtol=1e-5)
