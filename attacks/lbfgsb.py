"""Box-constrained L-BFGS for ONE problem, written to be vmapped (jaxopt-style API).

``minimise f(x) subject to lo ≤ x ≤ hi`` for an array x (any shape; bounds broadcast, ±inf
allowed).  Projected L-BFGS with the ε-active-set rule of Bertsekas' projected Newton method
(Bertsekas 1982; the projected quasi-Newton form of Kim, Sra & Dhillon 2010), i.e. the standard
active-set handling of L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995) without its Cauchy-point search:

* projected gradient  pg = P(x − ∇f) − x;  converged when ‖pg‖∞ ≤ ``tol``;
* ε-active set  A = {i : (xᵢ ≤ loᵢ + ε and ∂ᵢf > 0) or (xᵢ ≥ hiᵢ − ε and ∂ᵢf < 0)}, ε = ‖pg‖∞
  (a variable at a bound whose gradient points inward stays free);
* direction  d_F = −H_F ∇_F f from the two-loop recursion restricted to the free variables
  (pairs whose restricted curvature sᵀy is not positive are skipped, so H_F is positive
  definite), d_A = −γ ∇_A f (pushes active variables onto their bound);
* projected backtracking line search over a FIXED set of ``num_linesearch`` step sizes
  t₀·βᵏ (β² apart for a steepest-descent step, which has no natural length: t₀ = 1/‖d‖∞ then),
  evaluated together (vmapped) and masked by the Armijo condition
  f(P(x + t d)) ≤ f(x) + c₁ ∇fᵀ(P(x + t d) − x); the largest passing step wins.

There is no data-dependent loop inside an iteration, so a vmapped batch of problems costs the
same per iteration as one (unlike nested while loops that run in lock-step over the batch).
Outcomes are data: ``state.result`` holds an `LBFGSBResult` code, never an exception.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from attacks._base import iterate


class LBFGSBResult:
    """Integer result codes stored in `LBFGSBState.result`."""

    RUNNING = -1
    SUCCESS = 0             # ‖P(x − ∇f) − x‖∞ ≤ tol
    SMALL_DECREASE = 1      # relative decrease of f ≤ ftol (SciPy's REL_REDUCTION_OF_F)
    MAX_STEPS = 2           # maxiter iterations without convergence
    LINESEARCH_FAILED = 3   # no trial step decreased f, even along the steepest descent
    NONFINITE = 4           # f or ∇f became NaN / inf at an accepted point

    NAMES = {-1: "running", 0: "success", 1: "small decrease", 2: "max steps",
             3: "line search failed", 4: "nonfinite"}


class LBFGSBState(NamedTuple):
    iter_num: jax.Array       # int32
    value: jax.Array          # f(x)
    grad: jax.Array           # ∇f(x), shape of x
    s_history: jax.Array      # (m, n) x_{k+1} − x_k
    y_history: jax.Array      # (m, n) ∇f_{k+1} − ∇f_k
    num_pairs: jax.Array      # int32, valid pairs (≤ m)
    next_slot: jax.Array      # int32, circular write position
    error: jax.Array          # ‖P(x − ∇f) − x‖∞
    result: jax.Array         # int32 `LBFGSBResult` code
    num_fun_evals: jax.Array  # int32
    aux: Any = None           # with ``has_aux``: fun's auxiliary output at the current point


class OptStep(NamedTuple):
    params: jax.Array
    state: LBFGSBState


def _bounds(bounds, x):
    """``(lo, hi)`` broadcast to ``x.shape`` and flattened to ``(n,)`` (±inf for a free side)."""
    if bounds is None:
        return jnp.full((x.size,), -jnp.inf, x.dtype), jnp.full((x.size,), jnp.inf, x.dtype)
    lo, hi = bounds
    lo = jnp.broadcast_to(jnp.asarray(-jnp.inf if lo is None else lo, x.dtype), x.shape)
    hi = jnp.broadcast_to(jnp.asarray(jnp.inf if hi is None else hi, x.dtype), x.shape)
    return lo.reshape(-1), hi.reshape(-1)


def projected_gradient_error(x, grad, lo, hi):
    """``‖P(x − ∇f) − x‖∞``: zero exactly at a KKT point of the box-constrained problem."""
    return jnp.max(jnp.abs(jnp.clip(x - grad, lo, hi) - x))


def _two_loop(q, s_hist, y_hist, free, sy, yy, use, order):
    """``H_F q`` by the L-BFGS two-loop recursion over the pairs flagged ``use`` (newest first),
    restricted to the free variables: every pair is read as (s∘free, y∘free), with ``sy``, ``yy``
    their restricted inner products.  The mask is applied row by row, so no masked copy of the
    (m, n) history is made (``q`` is already zero off ``free``)."""
    rho = jnp.where(use, 1.0 / jnp.where(use, sy, 1.0), 0.0)

    def backward(q, i):
        a = rho[i] * jnp.vdot(s_hist[i], q)
        return q - a * (y_hist[i] * free), a

    q, alphas = lax.scan(backward, q, order)
    newest = order[jnp.argmax(use[order])]
    gamma = jnp.where(jnp.any(use), sy[newest] / jnp.where(jnp.any(use), yy[newest], 1.0), 1.0)
    r = gamma * q

    def forward(r, ia):
        i, a = ia
        b = rho[i] * jnp.vdot(y_hist[i], r)
        return r + (s_hist[i] * free) * (a - b), None

    r, _ = lax.scan(forward, r, (order[::-1], alphas[::-1]))
    return r, gamma


@dataclasses.dataclass(frozen=True)
class LBFGSB:
    """Projected L-BFGS with active-set handling of box bounds, for one problem (vmap outside).

    Attributes:
      fun: ``fun(x, *args) -> scalar``, differentiable in ``x`` (an array of any shape); with
        ``has_aux``, ``fun(x, *args) -> (scalar, aux)`` and ``state.aux`` holds ``aux`` at the
        current iterate (e.g. the logits, so a caller need not evaluate the model again).
      maxiter: iteration cap.  tol: stop when ``‖P(x − ∇f) − x‖∞ ≤ tol``.
      ftol: stop when ``(f_k − f_{k+1}) ≤ ftol·max(|f_k|, |f_{k+1}|, 1)`` (0 disables).
      history_size: stored (s, y) pairs m.  num_linesearch: trial steps per iteration.
      decrease_factor: β between trial steps.  armijo: c₁ of the sufficient-decrease test.

    ``run(x0, bounds, *args)`` projects ``x0`` into the box and returns ``OptStep(params, state)``;
    ``init_state`` and ``update`` are the pure pieces it iterates.  ``bounds`` is ``(lo, hi)``
    broadcastable to ``x`` (use ±inf or None for a free side) or ``None``.

    Example::

        solver = LBFGSB(lambda x, A, b: 0.5 * x @ A @ x + b @ x, tol=1e-10)
        x, state = solver.run(jnp.zeros(3), (-1.0, 1.0), A, b)
        # state.result == LBFGSBResult.SUCCESS
    """

    fun: Callable
    maxiter: int = 200
    tol: float = 1e-6
    ftol: float = 2.2e-9
    history_size: int = 10
    num_linesearch: int = 16
    decrease_factor: float = 0.5
    armijo: float = 1e-4
    has_aux: bool = False

    def __post_init__(self):
        from attacks import _validate

        if self.fun is not None and not callable(self.fun):   # None: only `state_at` is used
            raise TypeError(f"fun must be callable, got {type(self.fun).__name__}.")
        for name in ("maxiter", "history_size", "num_linesearch"):
            _validate.check_int(getattr(self, name), name, minimum=1)
        _validate.check_tolerance(self.tol, "tol")
        _validate.check_tolerance(self.ftol, "ftol")
        _validate.check_tolerance(self.decrease_factor, "decrease_factor", upper=1.0)
        _validate.check_tolerance(self.armijo, "armijo", upper=1.0)
        if not self.decrease_factor > 0:
            raise ValueError(f"decrease_factor must be in (0, 1), got {self.decrease_factor!r}.")

    def _flat_fun(self, shape):
        """``v (n,) -> (value, aux)`` (aux None without ``has_aux``)."""
        if self.has_aux:
            return lambda v, *args: self.fun(v.reshape(shape), *args)
        return lambda v, *args: (self.fun(v.reshape(shape), *args), None)

    def init_state(self, init_params, bounds, *args) -> LBFGSBState:
        x = jnp.asarray(init_params)
        (value, aux), grad = jax.value_and_grad(self._flat_fun(x.shape), has_aux=True)(x.reshape(-1), *args)
        m, n = self.history_size, x.size
        zeros = jnp.zeros((m, n), x.dtype)
        return self.state_at(x, value, grad, bounds, zeros, zeros, aux)

    def state_at(self, params, value, grad, bounds, s_history, y_history, aux=None) -> LBFGSBState:
        """The state of a NEW solve at ``params`` where ``f = value`` and ``∇f = grad`` (and, with
        ``has_aux``, the auxiliary output ``aux``) are known.

        ``s_history``/``y_history`` ``(m, n)`` are buffers to reuse (e.g. a finished solve's):
        their rows are never read before being rewritten (``num_pairs = 0``), so a restart need
        not zero or copy them.
        """
        x = jnp.asarray(params)
        lo, hi = _bounds(bounds, x)
        v, grad = x.reshape(-1), jnp.asarray(grad).reshape(-1)
        error = projected_gradient_error(v, grad, lo, hi)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        result = jnp.where(~finite, LBFGSBResult.NONFINITE,
                           jnp.where(error <= self.tol, LBFGSBResult.SUCCESS, LBFGSBResult.RUNNING))
        return LBFGSBState(
            iter_num=jnp.zeros((), jnp.int32), value=value, grad=grad.reshape(x.shape),
            s_history=s_history, y_history=y_history,
            num_pairs=jnp.zeros((), jnp.int32), next_slot=jnp.zeros((), jnp.int32),
            error=error, result=result.astype(jnp.int32), num_fun_evals=jnp.ones((), jnp.int32),
            aux=aux)

    def update(self, params, state: LBFGSBState, bounds, *args) -> OptStep:
        shape = jnp.shape(params)
        fun = self._flat_fun(shape)
        lo, hi = _bounds(bounds, jnp.asarray(params))     # broadcast to x's own shape, then flatten
        x = jnp.asarray(params).reshape(-1)
        g, f = state.grad.reshape(-1), state.value
        m = self.history_size

        # ε-active set: near a bound with the gradient pushing outward.
        eps = state.error
        active = ((x <= lo + eps) & (g > 0)) | ((x >= hi - eps) & (g < 0))
        free = (~active).astype(x.dtype)

        order = (state.next_slot - 1 - jnp.arange(m)) % m          # newest first
        # Restricted curvature, as matrix-vector products: the mask is applied to the vector, so
        # no (m, n) masked copy of the history is made (the update is memory-bound).
        sy = jnp.dot(state.s_history * state.y_history, free)
        yy = jnp.dot(jnp.square(state.y_history), free)
        use = self._valid(order, state.num_pairs) & (sy > jnp.finfo(x.dtype).eps * yy) & (yy > 0)
        r, gamma = _two_loop(g * free, state.s_history, state.y_history, free, sy, yy, use, order)
        d = -r * free - gamma * g * (1.0 - free)
        slope = jnp.vdot(g, d)
        d = jnp.where(slope < 0, d, -g)                            # safeguard: steepest descent

        # Fixed, masked projected backtracking line search.
        dmax = jnp.max(jnp.abs(d))
        t0 = jnp.where(state.num_pairs == 0,
                       jnp.minimum(1.0, 1.0 / jnp.where(dmax > 0, dmax, 1.0)), 1.0)
        # A steepest-descent step (no curvature pair yet) has no natural length: its trials are
        # spaced β² apart, spanning twice the range of a quasi-Newton step's (where t = 1 is
        # nearly always accepted), so a few trials suffice for both.
        beta = jnp.where(state.num_pairs == 0, self.decrease_factor ** 2, self.decrease_factor)
        steps = t0 * beta.astype(x.dtype) ** jnp.arange(self.num_linesearch, dtype=x.dtype)
        trials = jax.vmap(lambda t: jnp.clip(x + t * d, lo, hi))(steps)
        values = jax.vmap(lambda xt: fun(xt, *args)[0])(trials)
        # ∇fᵀ(P(x + t d) − x) as one matrix-vector product (no (L, n) difference is materialised;
        # its rounding, ~1e-7·|x|·|∇f|, moves the Armijo threshold by c₁ times that: nothing).
        decrease = jnp.dot(trials, g) - jnp.vdot(x, g)
        moved = jnp.any(trials != x, axis=1)
        ok = moved & jnp.isfinite(values) & (values <= f + self.armijo * decrease)
        found = jnp.any(ok)
        x_try = trials[jnp.argmax(ok)]
        (f_new, aux_new), g_new = jax.value_and_grad(fun, has_aux=True)(x_try, *args)
        finite = jnp.isfinite(f_new) & jnp.all(jnp.isfinite(g_new))
        accept = found & finite

        s, yv = x_try - x, g_new - g
        store = accept & (jnp.vdot(s, yv) > jnp.finfo(x.dtype).eps * jnp.vdot(yv, yv))
        slot = state.next_slot
        # Write one row in place (a select over the whole (m, n) history would copy it each step).
        s_hist = state.s_history.at[slot].set(jnp.where(store, s, state.s_history[slot]))
        y_hist = state.y_history.at[slot].set(jnp.where(store, yv, state.y_history[slot]))
        num_pairs = jnp.where(store, jnp.minimum(state.num_pairs + 1, m), state.num_pairs)
        # A failed search with curvature pairs: drop them and retry along −∇f next iteration.
        num_pairs = jnp.where(~found, 0, num_pairs)
        next_slot = jnp.where(store, (slot + 1) % m, slot)

        x_new = jnp.where(accept, x_try, x)
        f_out = jnp.where(accept, f_new, f)
        g_out = jnp.where(accept, g_new, g)
        error = projected_gradient_error(x_new, g_out, lo, hi)
        iter_num = state.iter_num + 1
        small = accept & (f - f_new <= self.ftol * jnp.maximum(jnp.maximum(jnp.abs(f), jnp.abs(f_new)), 1.0))
        result = jnp.select(
            [found & ~finite, ~found & (state.num_pairs == 0), error <= self.tol, small,
             iter_num >= self.maxiter],
            [LBFGSBResult.NONFINITE, LBFGSBResult.LINESEARCH_FAILED, LBFGSBResult.SUCCESS,
             LBFGSBResult.SMALL_DECREASE, LBFGSBResult.MAX_STEPS],
            LBFGSBResult.RUNNING).astype(jnp.int32)
        state = LBFGSBState(
            iter_num=iter_num, value=f_out, grad=g_out.reshape(shape), s_history=s_hist,
            y_history=y_hist, num_pairs=num_pairs, next_slot=next_slot, error=error,
            result=result, num_fun_evals=state.num_fun_evals + self.num_linesearch + 1,
            aux=jax.tree.map(lambda a, b: jnp.where(accept, a, b), aux_new, state.aux))
        return OptStep(x_new.reshape(shape), state)

    @staticmethod
    def _valid(order, num_pairs):
        """Slot i holds a valid pair iff its age (position in newest-first order) < num_pairs."""
        age = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
        return age < num_pairs

    def run(self, init_params, bounds, *args) -> OptStep:
        x0 = jnp.asarray(init_params)
        lo, hi = _bounds(bounds, x0)
        x0 = jnp.clip(x0.reshape(-1), lo, hi).reshape(x0.shape)
        state = self.init_state(x0, bounds, *args)

        def step(i, carry):
            x, s = carry
            return tuple(self.update(x, s, bounds, *args))

        (x, state), _ = iterate(step, (x0, state), self.maxiter,
                                done=lambda c: c[1].result != LBFGSBResult.RUNNING)
        result = jnp.where(state.result == LBFGSBResult.RUNNING, LBFGSBResult.MAX_STEPS, state.result)
        return OptStep(x, state._replace(result=result.astype(jnp.int32)))
