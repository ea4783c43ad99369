"""PGD's choices that a concave toy problem cannot see: the best iterate (not the last), independent
restarts, `early_stop`, and the default step size 2.5·ε/num_steps.

Every case is one-dimensional, L∞, with the two-class logits ``(0, J(x))`` and label 0, so the margin
objective is exactly ``J(x)`` and success means ``J(x) > 0``. Sign steps of size α then walk the
grid ``x₀ + kα``, which makes every iterate computable by hand (comments give them). Float32
arithmetic on that grid is exact to ~1e-7, hence the 1e-5 tolerances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks


def two_class(J):
    """Per-example model whose margin objective for label 0 is ``J(x[0])``."""
    return lambda x: jnp.stack([jnp.zeros((), x.dtype), J(x[0])])


def bimodal(x):
    """J(x) = 0.1x − (x² − 0.49)²: a global maximum near x = 0.72 (J ≈ 0.07 > 0: success) and a
    local one near x = −0.68 (J ≈ −0.07 < 0: failure); the valley bottom (J' = 0) is at x ≈ −0.05."""
    return 0.1 * x - (x ** 2 - 0.49) ** 2


def quadratic_at(c):
    """J(x) = −1 − (x − c)²: concave, never a success; sign steps overshoot c and oscillate."""
    return lambda x: -1.0 - (x - c) ** 2


ZERO = jnp.zeros((1, 1), jnp.float32)
Y0 = jnp.zeros((1,), jnp.int32)


def test_returns_the_best_iterate_not_the_last():
    # From 0 with α = 0.2 toward c = 0.25: iterates 0, 0.2, 0.4, 0.2, 0.4 (4 steps). The last one
    # (0.4, J = −1.0225) is worse than 0.2 (J = −1.0025), which must be returned.
    res = attacks.pgd(two_class(quadratic_at(0.25)), ZERO, Y0, eps=1.0, step_size=0.2, num_steps=4,
                      random_start=False, loss="margin")
    np.testing.assert_allclose(res.x_adv[0, 0], 0.2, atol=1e-5)
    np.testing.assert_allclose(res.loss[0], -1.0025, atol=1e-5)
    assert not bool(res.success[0])
    assert int(res.num_steps[0]) == 4


def test_best_iterate_on_the_bimodal_problem_and_success_beats_objective():
    # From 0, α = 0.05 uphill: 0.05k until 0.70 (k = 14), then 0.75, 0.70, ... With 15 steps the
    # last iterate is 0.75 (J = 0.0697), the best 0.70 (J = 0.07).
    res = attacks.pgd(two_class(bimodal), ZERO, Y0, eps=1.0, step_size=0.05, num_steps=15,
                      random_start=False, loss="margin")
    np.testing.assert_allclose(res.x_adv[0, 0], 0.70, atol=1e-5)
    np.testing.assert_allclose(res.loss[0], float(bimodal(0.70)), atol=1e-6)
    assert bool(res.success[0])


def test_early_stop_stops_at_the_first_success():
    # Same walk: J(0.50) = −0.0076 < 0, J(0.55) = 0.0198 > 0. Step i evaluates x_i = 0.05i, so the
    # success at x_11 = 0.55 is recorded in step 11 (the 12th) and the loop stops: 12 steps, and
    # the final evaluation of x_12 = 0.60 (J = 0.043, better) is what is returned.
    kw = dict(eps=1.0, step_size=0.05, num_steps=40, random_start=False, loss="margin")
    res = attacks.pgd(two_class(bimodal), ZERO, Y0, early_stop=True, **kw)
    assert int(res.num_steps[0]) == 12
    np.testing.assert_allclose(res.x_adv[0, 0], 0.60, atol=1e-5)
    assert bool(res.success[0])
    full = attacks.pgd(two_class(bimodal), ZERO, Y0, early_stop=False, **kw)
    assert int(full.num_steps[0]) == 40
    np.testing.assert_allclose(full.x_adv[0, 0], 0.70, atol=1e-5)   # the maximum on the grid
    assert float(full.loss[0]) > float(res.loss[0]) + 0.02


def test_early_stop_skips_the_remaining_restarts():
    # Random starts in [−1, 1]; with early stop a success in restart r leaves restarts r+1.. at
    # 0 steps, so the step count is below restarts·num_steps exactly for examples that succeeded
    # before their last restart (and equals it for the others).
    x = jnp.zeros((32, 1), jnp.float32)
    y = jnp.zeros((32,), jnp.int32)
    kw = dict(eps=1.0, step_size=0.05, num_steps=60, random_start=True, restarts=4, loss="margin",
              key=jax.random.key(3))
    stop = attacks.pgd(two_class(bimodal), x, y, early_stop=True, **kw)
    full = attacks.pgd(two_class(bimodal), x, y, early_stop=False, **kw)
    assert np.all(np.asarray(full.num_steps) == 240)
    steps = np.asarray(stop.num_steps)
    assert np.all(steps <= 240) and np.all(steps[np.asarray(stop.success)] < 240)
    # a success in the first restart costs at most ~30 steps (the walk from −0.05 to 0.55 is 12;
    # from the left basin it never succeeds): many examples stop early
    assert np.sum(steps <= 60) >= 8
    np.testing.assert_array_equal(stop.success, full.success)


def test_restarts_draw_independent_starts():
    # From a uniform start in [−1, 1] a single run reaches the successful basin with probability
    # ≈ 0.52 (start right of the valley at −0.05). Eight independent restarts fail with probability
    # 0.48⁸ ≈ 0.003 per example: ≥ 60 of 64 succeed (P(≥ 5 failures) < 1e-6). Restarts reusing one
    # key would repeat the same start: ≈ 31 of 64.
    b = 64
    x = jnp.zeros((b, 1), jnp.float32)
    y = jnp.zeros((b,), jnp.int32)
    kw = dict(eps=1.0, step_size=0.05, num_steps=40, loss="margin", key=jax.random.key(0))
    one = attacks.pgd(two_class(bimodal), x, y, restarts=1, **kw)
    many = attacks.pgd(two_class(bimodal), x, y, restarts=8, **kw)
    n_one, n_many = int(np.sum(one.success)), int(np.sum(many.success))
    assert 16 <= n_one <= 48          # the single-start rate, ≈ 33 ± 4 (binomial sd), ±4 sd
    assert n_many >= 60
    assert int(many.num_steps[0]) == 8 * 40
    # the best over restarts is never worse than the first restart alone (same key → restart 0
    # is the single run)
    assert np.all(np.asarray(many.loss) >= np.asarray(one.loss) - 1e-6)


def test_default_step_size_is_madry_heuristic():
    # ε = 1, 10 steps: α = 2.5·1/10 = 0.25; toward c = 0.6 the iterates are 0, 0.25, 0.5, 0.75,
    # 0.5, ...: best 0.5 (J = −1.01). α = ε/num_steps = 0.1 would reach 0.6; α = 0.35, 0.7.
    kw = dict(num_steps=10, random_start=False, loss="margin")
    res = attacks.pgd(two_class(quadratic_at(0.6)), ZERO, Y0, eps=1.0, **kw)
    np.testing.assert_allclose(res.x_adv[0, 0], 0.5, atol=1e-5)
    explicit = attacks.pgd(two_class(quadratic_at(0.6)), ZERO, Y0, eps=1.0, step_size=0.25, **kw)
    np.testing.assert_array_equal(res.x_adv, explicit.x_adv)


def test_default_step_size_per_budget_with_epsilons():
    # epsilons = (1.0, 0.8): α = 0.25 and 0.2. Toward c = 0.6: 0.5 (as above), and 0, 0.2, 0.4,
    # 0.6 = c exactly (J = −1) for ε = 0.8. The first budget's step (0.25) would give 0.5 or 0.75
    # within 0.8.
    res = attacks.pgd(two_class(quadratic_at(0.6)), ZERO, Y0, epsilons=[1.0, 0.8], num_steps=10,
                      random_start=False, loss="margin")
    np.testing.assert_allclose(res.x_adv[:, 0, 0], [0.5, 0.6], atol=1e-5)


def test_default_step_size_per_example_eps():
    res = attacks.pgd(two_class(quadratic_at(0.6)), jnp.zeros((2, 1), jnp.float32),
                      jnp.zeros((2,), jnp.int32), eps=jnp.asarray([1.0, 0.8]), num_steps=10,
                      random_start=False, loss="margin")
    np.testing.assert_allclose(res.x_adv[:, 0], [0.5, 0.6], atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_ball_is_centred_on_the_original_point(norm):
    # A linear objective J = x pushes right forever: every step size ends at x₀ + ε exactly.
    res = attacks.pgd(two_class(lambda v: v - 10.0), jnp.full((1, 1), 0.3, jnp.float32), Y0,
                      eps=0.5, step_size=0.2, num_steps=7, random_start=False, loss="margin", norm=norm)
    np.testing.assert_allclose(res.x_adv[0, 0], 0.8, atol=1e-6)
    np.testing.assert_allclose(res.distance[0], 0.5, atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_step_direction_in_two_dimensions(norm):
    # J = w·x with w = (3, 1) (no success: an offset of −100), one step of α = 0.1 from 0 inside a
    # large ball: L∞ steps α·sign(w) = (0.1, 0.1); L2 steps α·w/‖w‖ = (0.3, 0.1)/√10. In one
    # dimension the two coincide, hence this case.
    f = lambda x: jnp.stack([jnp.zeros((), x.dtype), 3.0 * x[0] + x[1] - 100.0])
    res = attacks.pgd(f, jnp.zeros((1, 2), jnp.float32), Y0, eps=10.0, step_size=0.1, num_steps=1,
                      random_start=False, loss="margin", norm=norm)
    expected = [0.1, 0.1] if norm == "linf" else [0.3 / np.sqrt(10), 0.1 / np.sqrt(10)]
    np.testing.assert_allclose(res.x_adv[0], expected, atol=1e-6)
    # an L2 step of length α that overshoots a ball of radius 0.05 is shrunk radially onto it
    small = attacks.pgd(f, jnp.zeros((1, 2), jnp.float32), Y0, eps=0.05, step_size=0.1, num_steps=1,
                        random_start=False, loss="margin", norm=norm)
    expected = [0.05, 0.05] if norm == "linf" else [0.15 / np.sqrt(10), 0.05 / np.sqrt(10)]
    np.testing.assert_allclose(small.x_adv[0], expected, atol=1e-6)
