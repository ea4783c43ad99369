"""`attacks.LBFGSB`'s pure pieces (`init_state`, `state_at`, `update`) and its active set on
problems where bounds bind, on either side, checked by the KKT conditions (independent of SciPy).

Every problem is a strictly convex quadratic ``½ xᵀQx + cᵀx`` in float64, so the box-constrained
minimiser is unique and characterised by: ``∂ᵢf = 0`` where ``lo < xᵢ < hi``, ``∂ᵢf ≥ 0`` at ``lo``,
``∂ᵢf ≤ 0`` at ``hi``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attacks import LBFGSB, LBFGSBResult
from attacks.lbfgsb import projected_gradient_error
from _attack_models import quadratic, x64  # noqa: F401 -- x64 is a fixture


pytestmark = pytest.mark.usefixtures("x64")      # float64 throughout


def problem(seed, n=8, cond=30.0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(n, n)))
    Q = U @ np.diag(np.geomspace(1.0, cond, n)) @ U.T
    return jnp.asarray(Q), rng


def kkt_residual(x, g, lo, hi, tol):
    """Largest violation of the box KKT conditions at x with gradient g."""
    x, g = np.asarray(x), np.asarray(g)
    at_lo, at_hi = np.isclose(x, lo, atol=tol), np.isclose(x, hi, atol=tol)
    interior = ~at_lo & ~at_hi
    return max(np.max(np.abs(g[interior]), initial=0.0),
               np.max(-g[at_lo], initial=0.0), np.max(g[at_hi], initial=0.0)), at_lo, at_hi


# Where the unconstrained minimiser −Q⁻¹c lies relative to the box decides which bounds bind:
# "upper" pushes the minimiser above the box, "lower" below it, "both" either way.
CASES = [("upper", 0), ("upper", 1), ("lower", 2), ("lower", 3), ("both", 4), ("both", 5), ("both", 6)]


KKT_RUN = jax.jit(LBFGSB(quadratic, tol=1e-9, ftol=0.0, maxiter=200).run)   # one compilation


@pytest.mark.parametrize("side,seed", CASES)
def test_active_set_solution_satisfies_kkt(side, seed):
    Q, rng = problem(seed)
    n = Q.shape[0]
    target = {"upper": rng.uniform(0.5, 3.0, n), "lower": -rng.uniform(0.5, 3.0, n),
              "both": np.resize([-1.0, 1.0], n) * rng.uniform(1.5, 3.0, n)}[side]
    c = -Q @ jnp.asarray(target)                     # unconstrained minimiser = target
    lo, hi = -np.ones(n), np.ones(n)
    x, state = KKT_RUN(jnp.zeros(n), (jnp.asarray(lo), jnp.asarray(hi)), Q, c)
    # SMALL_DECREASE (ftol = 0: a step that no longer lowers f) or LINESEARCH_FAILED is the
    # rounding floor: |f| ~ 50 resolves f to ~1e-14, the projected gradient to ~1e-7 (as the
    # SciPy comparison in test_attacks_lbfgsb.py allows)
    assert int(state.result) in (LBFGSBResult.SUCCESS, LBFGSBResult.SMALL_DECREASE,
                                 LBFGSBResult.LINESEARCH_FAILED)
    assert float(state.error) <= 1e-6
    # converged in far fewer than maxiter iterations: a wrong active set either stalls (MAX_STEPS)
    # or zigzags; 8 variables at condition 30 take ~10-40 here
    assert int(state.iter_num) <= 100
    g = np.asarray(Q @ x + c)
    res, at_lo, at_hi = kkt_residual(x, g, lo, hi, tol=1e-7)
    # tolerance: the projected gradient's rounding floor above (1e-6), times a small factor
    assert res <= 3e-6
    assert np.all(np.asarray(x) >= lo) and np.all(np.asarray(x) <= hi)
    # the bounds that should bind do: (lower, upper) binding counts at least
    need_lo, need_hi = {"upper": (0, 1), "lower": (1, 0), "both": (1, 1)}[side]
    assert at_lo.sum() >= need_lo and at_hi.sum() >= need_hi


def test_variable_at_a_bound_with_inward_gradient_is_free_and_moves():
    # f = ½‖x − c‖², start on the upper bound of x₀ with c₀ = 0 inside: ∂₀f = 1 > 0 points inward
    # (descent goes down), so x₀ must leave the bound and reach 0; x₁ starts at its lower bound
    # with c₁ = −5 outside: ∂₁f = 4 > 0 pushes outward, x₁ stays at −1 exactly.
    solver = LBFGSB(lambda x: 0.5 * jnp.sum((x - jnp.asarray([0.0, -5.0])) ** 2), tol=1e-12, ftol=0.0)
    x, state = jax.jit(solver.run)(jnp.asarray([1.0, -1.0]), (-1.0, 1.0))
    assert int(state.result) == LBFGSBResult.SUCCESS
    np.testing.assert_allclose(x, [0.0, -1.0], atol=1e-12)


def test_one_update_keeps_outward_pushed_variables_on_their_bound_and_decreases_f():
    # separable (diagonal Q): a variable pushed outward at its bound is pushed outward for good
    Q = jnp.diag(jnp.asarray([1.0, 2.0, 5.0, 0.5, 3.0, 1.5]))
    c = -Q @ jnp.asarray([2.0, -2.0, 0.3, -0.1, 3.0, -3.0])
    lo, hi = -jnp.ones(6), jnp.ones(6)
    solver = LBFGSB(quadratic, tol=1e-12)
    x = x0 = jnp.asarray([1.0, -1.0, 0.0, 0.0, 1.0, -1.0])
    state = solver.init_state(x, (lo, hi), Q, c)
    g0 = np.asarray(state.grad)
    outward = ((np.asarray(x) >= 1.0) & (g0 < 0)) | ((np.asarray(x) <= -1.0) & (g0 > 0))
    assert outward.sum() >= 2                                    # the setup has such variables
    for _ in range(5):
        f_prev = float(state.value)
        x, state = jax.jit(solver.update)(x, state, (lo, hi), Q, c)
        assert float(state.value) <= f_prev                      # Armijo: monotone
        assert np.all(np.abs(np.asarray(x)) <= 1.0)
    # exactly where they started (the projection clips them back onto the bound every step)
    np.testing.assert_array_equal(np.asarray(x)[outward], np.asarray(x0)[outward])


def test_init_state_fields():
    Q, _ = problem(1, n=4)
    c = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    lo, hi = jnp.asarray([-1.0, -1.0, -jnp.inf, 0.0]), jnp.asarray([1.0, jnp.inf, 1.0, 2.0])
    x = jnp.asarray([0.5, -1.0, 0.0, 0.0])
    solver = LBFGSB(quadratic, history_size=5)
    s = solver.init_state(x, (lo, hi), Q, c)
    g = Q @ x + c
    assert float(s.value) == pytest.approx(float(quadratic(x, Q, c)), rel=1e-15)
    np.testing.assert_allclose(s.grad, g, rtol=1e-15)
    # the projected-gradient error ‖P(x − g) − x‖∞, written out
    ref_err = float(jnp.max(jnp.abs(jnp.clip(x - g, lo, hi) - x)))
    assert float(s.error) == pytest.approx(ref_err, rel=1e-15)
    assert float(projected_gradient_error(x, g, lo, hi)) == pytest.approx(ref_err, rel=1e-15)
    assert s.s_history.shape == s.y_history.shape == (5, 4)
    assert int(s.iter_num) == int(s.num_pairs) == int(s.next_slot) == 0
    assert int(s.num_fun_evals) == 1 and int(s.result) == LBFGSBResult.RUNNING
    # already optimal: SUCCESS at once; a non-finite value: NONFINITE
    x_opt = jnp.asarray([0.0, 0.0])
    assert int(LBFGSB(lambda v: jnp.sum(v ** 2)).init_state(x_opt, None).result) == LBFGSBResult.SUCCESS
    assert int(LBFGSB(lambda v: jnp.sum(jnp.log(v))).init_state(-jnp.ones(2), None).result) == \
        LBFGSBResult.NONFINITE


def test_state_at_restarts_from_known_values_and_ignores_old_history():
    Q, _ = problem(2, n=5)
    c = jnp.asarray([1.0, -2.0, 0.5, 3.0, -1.0])
    bounds = (-0.5, 0.5)
    solver = LBFGSB(quadratic, tol=1e-11, ftol=0.0, history_size=4)
    x = jnp.asarray([0.1, -0.2, 0.3, 0.0, 0.5])
    fresh = solver.init_state(x, bounds, Q, c)
    garbage = jnp.full((4, 5), 123.0)                  # buffers from "another solve"
    reused = solver.state_at(x, fresh.value, fresh.grad, bounds, garbage, -garbage)
    for name in ("value", "grad", "error", "result", "num_pairs", "next_slot", "iter_num"):
        np.testing.assert_array_equal(getattr(reused, name), getattr(fresh, name))
    upd = jax.jit(solver.update)
    xa, sa, xb, sb = x, fresh, x, reused
    for _ in range(30):
        xa, sa = upd(xa, sa, bounds, Q, c)
        xb, sb = upd(xb, sb, bounds, Q, c)
    # the history is written before it is read: identical iterates
    np.testing.assert_array_equal(xa, xb)
    # and the loop of updates is what run() does (run stops at convergence; so do these iterates)
    xr, sr = jax.jit(solver.run)(x, bounds, Q, c)
    np.testing.assert_allclose(xa, xr, atol=1e-10)
    assert int(sr.result) == LBFGSBResult.SUCCESS


def test_first_update_is_a_projected_steepest_descent_step_of_length_one_over_max_grad():
    # No curvature pair yet: d = −g, t₀ = 1/‖g‖∞, trials t₀·β^{2k}. For f = ½‖x − c‖² from 0 the
    # first trial x = c/‖c‖∞ satisfies Armijo (f drops), so the first iterate is c/‖c‖∞ (clipped).
    c = jnp.asarray([4.0, -2.0, 1.0])
    solver = LBFGSB(lambda x: 0.5 * jnp.sum((x - c) ** 2))
    s = solver.init_state(jnp.zeros(3), None)
    x1, s1 = solver.update(jnp.zeros(3), s, None)
    np.testing.assert_allclose(x1, c / 4.0, rtol=1e-15)
    assert int(s1.num_pairs) == 1 and int(s1.next_slot) == 1 and int(s1.iter_num) == 1
    np.testing.assert_allclose(s1.s_history[0], c / 4.0, rtol=1e-15)
    np.testing.assert_allclose(s1.y_history[0], c / 4.0, rtol=1e-15)       # ∇ differences: Δx here
    assert int(s1.num_fun_evals) == 1 + solver.num_linesearch + 1
    # second step: with the exact curvature pair the quasi-Newton step reaches c
    x2, s2 = solver.update(x1, s1, None)
    np.testing.assert_allclose(x2, c, rtol=1e-12)
    assert int(s2.result) == LBFGSBResult.SUCCESS


def _first_step(x0, **kw):
    """One `update` of f(x) = Σx² from x0, no bounds: ``(x₁, state₁)``."""
    solver = LBFGSB(lambda v: jnp.sum(v ** 2), **kw)
    x0 = jnp.asarray(x0, jnp.float64)
    return solver.update(x0, solver.init_state(x0, None), None)


@pytest.mark.parametrize("x0, x1", [(0.5, 0.25), (0.25, 0.125)])
def test_first_step_length_and_armijo_by_hand(x0, x1):
    """With no curvature pair the search runs along d = −∇f = −2x₀ from t₀ = min(1, 1/max|d|), trials
    β² = 1/4 apart. From x₀ = 0.5 (|d| = 1) and 0.25 (|d| = 0.5) the first trial, t = 1, lands on
    −x₀: the same f, no decrease, so Armijo (f(x_t) ≤ f + c₁ ∇fᵀ(x_t − x)) refuses it; t = 1/4 gives
    x₀/2, accepted. (A first step longer than 1 from 0.25 would land elsewhere.)"""
    x, state = _first_step([x0])
    assert float(x[0]) == x1 and float(state.value) == x1 ** 2
    assert int(state.num_fun_evals) == 1 + 16 + 1             # init, the fixed trials, the accepted point


def test_small_decrease_is_reported_and_result_codes_are_distinct():
    # 0.25 → 0.0625 is a decrease of 0.1875 ≤ ftol·max(|f|, 1) = 0.5: stop with SMALL_DECREASE
    _, state = _first_step([0.5], ftol=0.5)
    assert int(state.result) == LBFGSBResult.SMALL_DECREASE
    _, state = _first_step([0.5], ftol=0.1)
    assert int(state.result) == LBFGSBResult.RUNNING
    codes = {n: getattr(LBFGSBResult, n) for n in ("RUNNING", "SUCCESS", "SMALL_DECREASE", "MAX_STEPS",
                                                    "LINESEARCH_FAILED", "NONFINITE")}
    assert len(set(codes.values())) == 6
    assert LBFGSBResult.NAMES == {-1: "running", 0: "success", 1: "small decrease", 2: "max steps",
                                  3: "line search failed", 4: "nonfinite"}
    assert LBFGSBResult.NAMES[codes["LINESEARCH_FAILED"]] == "line search failed"
