"""The box-constrained L-BFGS solver against SciPy's L-BFGS-B, in float64.

Problems are strictly convex, so the minimiser is unique and both solvers must find the same
point: we require 1e-5 (the issue's tolerance) in the max norm.  SciPy is run with tight
tolerances so that its own error is far below that.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

from attacks import LBFGSB, LBFGSBResult
from _attack_models import quadratic, x64  # noqa: F401 -- x64 is a fixture

N, BATCH = 8, 6


pytestmark = pytest.mark.usefixtures("x64")      # float64 throughout


def logistic_ridge(x, A, labels, lam):
    """Mean logistic loss of a linear classifier with weights x plus a ridge term: strictly convex."""
    margins = labels * (A @ x)
    return jnp.mean(jnp.logaddexp(0.0, -margins)) + 0.5 * lam * x @ x


def random_problems(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    args, lows, highs = [], [], []
    for _ in range(BATCH):
        if kind == "quadratic":
            M = rng.normal(size=(N, N))
            Q = M @ M.T / N + 0.1 * np.eye(N)              # condition number ~ 10²
            args.append((Q, rng.normal(size=N) * 2.0))
        else:
            A = rng.normal(size=(20, N))
            labels = np.sign(A @ rng.normal(size=N) + 0.5 * rng.normal(size=20))
            args.append((A, labels, 0.05))
        lo = -rng.uniform(0.05, 1.0, N)
        hi = rng.uniform(0.05, 1.0, N)
        free = rng.random(N) < 0.25                         # some sides unbounded
        lo[free] = -np.inf
        lows.append(lo), highs.append(hi)
    stacked = tuple(jnp.asarray(np.stack([a[i] for a in args])) for i in range(len(args[0])))
    return stacked, np.array(lows), np.array(highs), args


def numpy_value_and_grad(kind, args):
    """The same objectives in NumPy, so SciPy's iterations do not dispatch JAX ops."""
    if kind == "quadratic":
        Q, c = args
        return lambda x: (0.5 * x @ Q @ x + c @ x, Q @ x + c)
    A, labels, lam = args

    def vg(x):
        m = labels * (A @ x)
        grad = -(A * (labels * scipy.special.expit(-m))[:, None]).mean(0) + lam * x
        return np.logaddexp(0.0, -m).mean() + 0.5 * lam * x @ x, grad
    return vg


def scipy_reference(kind, args, lo, hi):
    bounds = [(None if np.isinf(l) else l, None if np.isinf(h) else h) for l, h in zip(lo, hi)]
    sol = scipy.optimize.minimize(numpy_value_and_grad(kind, args), np.zeros(N), jac=True,
                                  method="L-BFGS-B", bounds=bounds,
                                  options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000})
    return sol.x


@functools.lru_cache(maxsize=None)
def batched_run(kind):
    fun = quadratic if kind == "quadratic" else logistic_ridge
    # ftol=0: stop on the projected gradient only (the default ftol stops ~1e-6 early, as SciPy's).
    solver = LBFGSB(fun, tol=1e-10, ftol=0.0, maxiter=300)
    nargs = 2 if kind == "quadratic" else 3
    in_axes = (0, (0, 0)) + (0,) * nargs
    return solver, jax.jit(jax.vmap(solver.run, in_axes=in_axes))


@pytest.mark.parametrize("kind", ["quadratic", "logistic_ridge"])
def test_matches_scipy_lbfgsb(kind):
    stacked, lo, hi, args = random_problems(kind, seed=0)
    solver, run = batched_run(kind)
    x, state = run(jnp.zeros((BATCH, N)), (jnp.asarray(lo), jnp.asarray(hi)), *stacked)
    assert np.all(np.isin(np.asarray(state.result), [LBFGSBResult.SUCCESS, LBFGSBResult.SMALL_DECREASE,
                                                     LBFGSBResult.LINESEARCH_FAILED]))
    active = 0
    for i in range(BATCH):
        ref = scipy_reference(kind, args[i], lo[i], hi[i])
        np.testing.assert_allclose(x[i], ref, atol=1e-5, rtol=0)   # the tolerance
        active += np.sum(np.isclose(ref, lo[i]) | np.isclose(ref, hi[i]))
        assert np.all(x[i] >= lo[i]) and np.all(x[i] <= hi[i])
    assert 0 < active < BATCH * N, "problems should have both active and free bounds"
    # Converged to first order: projected gradient ~0 (1e-6 allows for line-search stalls at
    # rounding level, where SciPy stops too).
    assert np.all(state.error <= 1e-6)


def test_jit_vmap_and_python_loop_agree():
    stacked, lo, hi, _ = random_problems("quadratic", seed=1)
    solver, run = batched_run("quadratic")
    x_batch, s_batch = run(jnp.zeros((BATCH, N)), (jnp.asarray(lo), jnp.asarray(hi)), *stacked)
    single = jax.jit(solver.run)
    for i in range(3):     # jit per problem, and (once, it is slow) no jit at all
        args = tuple(a[i] for a in stacked)
        bounds = (jnp.asarray(lo[i]), jnp.asarray(hi[i]))
        for runner in (single, solver.run) if i == 0 else (single,):
            x, s = runner(jnp.zeros(N), bounds, *args)
            # Same program up to fusion: iterates agree to rounding, the result code exactly.
            np.testing.assert_allclose(x, x_batch[i], atol=1e-9)
            assert int(s.result) == int(s_batch.result[i])


def test_result_codes_and_infeasible_start_projected():
    Q = jnp.eye(3) * 2.0
    c = jnp.array([-4.0, 1.0, 0.0])
    run = lambda solver, *a: jax.jit(solver.run)(*a)
    x, state = run(LBFGSB(quadratic, tol=1e-12, maxiter=1), jnp.array([5.0, 5.0, 5.0]), (-1.0, 1.0), Q, c)
    assert int(state.result) == LBFGSBResult.MAX_STEPS and np.all(np.abs(x) <= 1.0)   # projected start
    x, state = run(LBFGSB(quadratic, tol=1e-12, maxiter=50), jnp.zeros(3), (-1.0, 1.0), Q, c)
    assert int(state.result) == LBFGSBResult.SUCCESS
    np.testing.assert_allclose(x, [1.0, -0.5, 0.0], atol=1e-12)   # x₁ clipped at its bound
    # sum(log v) is unbounded below as v -> 0 and NaN beyond: the search must stop, not return NaN.
    x, state = run(LBFGSB(lambda v: jnp.sum(jnp.log(v)), maxiter=20), jnp.ones(2), None)
    assert int(state.result) in (LBFGSBResult.NONFINITE, LBFGSBResult.LINESEARCH_FAILED,
                                 LBFGSBResult.MAX_STEPS)
    assert np.all(np.isfinite(x)) and np.all(x > 0)


# --------------------------------------------------------------------------- the attack's c search


def _c_search_by_rounds(f, xs, ts, *, c_rounds, maxiter, c_factor=10.0, num_linesearch=4, lo=0.0, hi=1.0):
    """Reference: the c search as the paper describes it, one full `LBFGSB.run` per round, round
    by round in plain Python (nothing shared with the attack's single-loop work pool).  Each round
    solves all examples with `vmap` (each with its own c), so its floating-point arithmetic is the
    batched arithmetic the attack uses.  Returns the best points ``(B, n)`` and the solver
    iterations per example."""
    from attacks._base import classification_loss

    def objective(xp, c, x0, t):
        return c * jnp.sum((xp - x0) ** 2) + classification_loss(f(xp), t, "ce")

    solver = LBFGSB(objective, maxiter=maxiter, tol=1e-5, ftol=2.2e-9, history_size=10,
                    num_linesearch=num_linesearch)
    run = jax.jit(jax.vmap(lambda x0, c, t: solver.run(x0, (lo, hi), c, x0, t)))
    B = len(xs)
    c, c_ok, c_fail = np.ones(B), np.zeros(B), np.full(B, np.inf)
    best, best_d, steps = np.asarray(xs).copy(), np.full(B, np.inf), np.zeros(B, int)
    for _ in range(c_rounds):
        xp, st = run(xs, jnp.asarray(c), ts)
        steps += np.asarray(st.iter_num)
        for i in range(B):
            ok = int(jnp.argmax(f(xp[i]))) == int(ts[i])
            d = float(jnp.linalg.norm(xp[i] - xs[i]))
            if ok and d < best_d[i]:
                best[i], best_d[i] = np.asarray(xp[i]), d
            c_ok[i], c_fail[i] = (max(c_ok[i], c[i]), c_fail[i]) if ok else (c_ok[i], min(c_fail[i], c[i]))
            c[i] = (c_ok[i] * c_factor if np.isinf(c_fail[i])
                    else c_fail[i] / c_factor if c_ok[i] == 0 else np.sqrt(c_ok[i] * c_fail[i]))
    return best, steps.tolist()


@pytest.mark.parametrize("c_rounds, maxiter", [(5, 30), (3, 2), (4, 1)])
def test_attack_single_loop_equals_round_by_round_c_search(c_rounds, maxiter):
    """`attacks.lbfgs` runs every example's c rounds as one loop (restarting a finished solve in the
    same iteration); a round-by-round Python reference must give the same point and the same solver
    iteration count (float64, same arithmetic: 1e-10). With maxiter 1 or 2 every solve runs to its
    cap, so the loop's bound on an example's iterations (c_rounds·(maxiter + 1)) must not cut a round."""
    import attacks

    rng = np.random.default_rng(11)
    W, V = jnp.asarray(rng.normal(size=(20, 4)) * 0.6), jnp.asarray(rng.normal(size=(4, 4)))
    f = lambda x: jnp.tanh(x @ W) @ V
    x = jnp.asarray(rng.uniform(0.2, 0.8, size=(5, 20)))
    t = (jnp.argmax(jax.vmap(f)(x), axis=1) + 1) % 4
    res = attacks.lbfgs(f, x, t, c_rounds=c_rounds, maxiter=maxiter, bounds=(0.0, 1.0))
    ref, steps = _c_search_by_rounds(f, x, t, c_rounds=c_rounds, maxiter=maxiter)
    np.testing.assert_allclose(res.x_adv, ref, atol=1e-10)
    assert [int(n) for n in res.num_steps] == steps
    if maxiter == 30:
        assert res.success.all()
    else:
        assert min(steps) == c_rounds * maxiter            # every round ran to its cap


def test_has_aux_keeps_the_auxiliary_output_of_the_current_iterate():
    """``has_aux``: the solver's path is the same as without it, and ``state.aux`` is fun's aux
    at the returned point (exactly: it is the value computed there)."""
    Q = jnp.diag(jnp.arange(1.0, 6.0))
    c = jnp.array([-4.0, 1.0, 0.5, -0.2, 3.0])
    plain = jax.jit(LBFGSB(quadratic, tol=1e-10).run)(jnp.zeros(5), (-1.0, 1.0), Q, c)
    with_aux = jax.jit(LBFGSB(lambda x, Q, c: (quadratic(x, Q, c), {"sq": x ** 2}), tol=1e-10,
                              has_aux=True).run)(jnp.zeros(5), (-1.0, 1.0), Q, c)
    np.testing.assert_array_equal(with_aux.params, plain.params)
    assert int(with_aux.state.iter_num) == int(plain.state.iter_num)
    np.testing.assert_array_equal(with_aux.state.aux["sq"], with_aux.params ** 2)
    assert plain.state.aux is None
