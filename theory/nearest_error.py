"""Exact nearest errors of the quadratic network, off and on the sphere (Gilmer et al. 2018, §4-5).

The boundary of ``ŷ(x) = w Σⱼ (W x)ⱼ² + b`` is the quadric ``Σ αᵢ zᵢ² = 1``, ``z = Uᵀx``
(``alphas_and_axes``); class 1 is predicted where ``Σ αᵢ zᵢ² > 1`` (``ŷ > 0``), class 0 elsewhere
(``ŷ = 0`` included). The nearest point of the other class is a boundary point (for class 1's open
region, the infimum). Lengths are rotation invariant, so everything is solved in ``z``, and both
problems are one: the nearest point ``w`` of a quadric ``Σ γᵢ wᵢ² = κ`` to ``z``.

* **Off the manifold**: ``γ = α``, ``κ = 1``; ``x̂ = U w``, distance ``‖w − z‖``.
* **On the manifold** (``‖x̂‖ = r = ‖x‖``): there ``Σ αᵢ wᵢ² = 1 = Σ wᵢ²/r²``, so the error region is
  the cone ``K = {±Σ γᵢ wᵢ² >= 0}``, ``γ = α − 1/r²``, ``κ = 0``. The nearest sphere point of ``K``
  maximises ``z·u`` over unit ``u ∈ K``; the nearest point ``w`` of ``K`` (on its boundary, one
  multiplier) has ``z − w ⟂ w`` (``K`` is closed under scaling), so ``‖z − w‖² = r² − (max z·u)²`` and
  ``x̂ = r U w/‖w‖``. With ``θ = atan2(‖z − w‖, ‖w‖)`` the angle from ``x`` to ``x̂``, ``distance`` is the
  chordal ``2r sin(θ/2)`` and ``geodesic`` is ``rθ``. No error exists on the sphere when every ``γᵢ``
  has the class's sign (class 0 with ``max α <= 1/r²``, class 1 with ``min α >= 1/r²``: the closed band
  of ``is_perfect``; an ``αᵢ`` within ``8√d eps`` relative of ``1/r²`` counts as equal, as ``r = ‖x‖``
  carries that rounding): the distance is ``+∞``.

**The secular equation.** Stationarity of ``‖w − z‖² + λ(Σ γᵢ wᵢ² − κ)`` gives
``wᵢ = zᵢ/(1 + λγᵢ)`` and ``g(λ) = Σ γᵢ zᵢ²/(1 + λγᵢ)² − κ = 0``. With one quadratic constraint
that takes both signs, a stationary point is the global minimiser iff ``I + λ diag(γ) ⪰ 0``
(Moré 1993, "Generalizations of the trust region problem", Thm 3.2), i.e. ``λ ∈ [−1/γ_max, −1/γ_min]``
(an end is infinite when no ``γᵢ`` has that sign), where ``g' = −2 Σ γᵢ² zᵢ²/(1 + λγᵢ)³ <= 0``: the
root is unique. ``g(0) = Σ γᵢ zᵢ² − κ``, so a class-0 point's root is in ``(−1/γ_max, 0)``, a class-1
point's in ``(0, −1/γ_min)``. With ``γ_max <= 0`` and ``κ = 1`` the quadric is empty.

**Solver.** Near the pole ``λ → −1/γₚ`` (``p`` the pivot: the largest ``γ`` for class 0, the
smallest for class 1 when it is negative) ``1 + λγₚ`` cancels, so the unknown is ``t = 1 + λγₚ ∈ (0, 1]``
with ``1 + λγᵢ = eᵢ + bᵢ t``, ``eᵢ = (αₚ − αᵢ)/γₚ`` (differences of the given ``α``, exact for repeated
ones), ``bᵢ = γᵢ/γₚ``. A class-1 point with every ``γᵢ >= 0`` has no pole: ``t = λ``, bracketed by
``0`` and ``min(‖z₊‖²/4κ, (Σ_{γᵢ>0} zᵢ²/γᵢ κ⁻¹)^{1/2})`` (each term ``γᵢzᵢ²/(1 + λγᵢ)²`` is at most
``zᵢ²/4λ`` and at most ``zᵢ²/λ²γᵢ``). In
either case ``q g`` splits into ``A(t) − B(t)`` with ``A = Σ_{qγᵢ>0} |γᵢ| zᵢ²/(eᵢ + bᵢt)²`` decreasing
and convex, ``B = Σ_{qγᵢ<0} (…)`` non-decreasing, ``κ`` added to ``B`` (``q = 1``) or to ``A`` (``q = −1``) so
neither is a difference, and Newton's method runs on
``ψ = A^{−1/2} − B^{−1/2}`` (Moré & Sorensen's reciprocal form: ``A^{−1/2}`` is concave and almost
linear near the pole, so a root at ``t ~ 1e-150`` takes a few steps) inside a bracket kept by the
sign of ``A − B``, bisecting (geometrically when the bracket spans decades) whenever a step leaves
it. The start is the better of ``√(w_J/B(1))`` (the pivot term alone exceeds ``B``'s maximum there, so
``A − B >= 0``) and one Newton step from ``λ = 0``, whose sums come free with the setup. It stops when a
Newton step is below ``2⁻³⁰`` relative (quadratic convergence leaves an error ~``2⁻⁶⁰``), steps back
onto a bracket end (rounding noise), or the bracket is ``4 eps`` wide; ``max_iter`` caps it. About
four steps at ``d = 500``.

``t`` resolves the root only near the pole: where it is near 1 (``λ`` far from the pole, as when
``|γₚ|`` is tiny beside the other ``γᵢ``: a zero ``α`` carrying rounding noise, or a huge ``r``), ``1 + λγᵢ``
would be formed from ``t`` with an absolute error of ``eps``. So the sign of ``A − B`` at ``t = 1/2``
picks the unknown: ``t ∈ (0, 1/2]``, or ``s = 1 − t = −λγₚ ∈ [0, 1/2]`` with
``c(1 + λγᵢ) = γₚ − γᵢ s``, each formed without cancellation.

**Hard case.** When ``z`` has no component on the pivot's eigenspace ``J`` (e.g. ``x`` on another
axis) and ``A(0) − B(0) <= 0`` without the ``J`` terms, ``g`` has no root inside the interval: the
minimiser sits at the pole, ``t = 0``, ``wᵢ = zᵢ/eᵢ`` off ``J``, and the constraint fixes the length
of the free ``J`` component, ``‖w_J‖² = (B(0) − A(0))/|γₚ|``; it is put on the pivot axis.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._common import check_radius, check_sphere, is_concrete, is_int, warn_if_float32
from .quadratic import _alpha_and_vectors, _check_b, _params_of

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def alphas_and_axes(W, w, b) -> tuple[jax.Array, jax.Array]:
    """``(alpha (d,), U (d, d))``: the ellipsoid coefficients sorted ascending (``theory.alphas``) and
    the orthogonal ``U`` whose column ``i`` is the eigenvector of ``(w/−b) WᵀW`` for ``αᵢ``, so that
    ``ŷ(x)/(−b) = Σ αᵢ zᵢ² − 1`` with ``z = Uᵀx``. Requires ``b < 0``."""
    warn_if_float32("alphas_and_axes", "alphas near 1 or 1/R² decide which points are errors")
    _check_b(b)
    alpha, vh = _alpha_and_vectors(W, w, b, full=True)
    return alpha, vh.T


def alphas_and_axes_from_variables(variables) -> tuple[jax.Array, jax.Array]:
    """``alphas_and_axes`` of a ``spheres.sphere.models.QuadraticNet`` from its Flax variables."""
    return alphas_and_axes(*_params_of(variables))


class NearestErrorResult(NamedTuple):
    """Exact nearest errors of a batch (``n`` points in ``R^d``).

    ``x_adv (n, d)``: the nearest error (a boundary point, or ``x`` itself when ``x`` is already an
    error or no error exists). ``distance (n,)``: ``‖x_adv − x‖₂`` (chordal on the manifold), 0 for
    points already misclassified, ``+∞`` where no error exists. ``geodesic (n,)``: the shortest path
    within the constraint set (``r θ`` on the sphere; off the manifold it equals ``distance``).
    ``exists``: an error exists. ``already_error``: ``x`` is misclassified (only with labels).
    ``hard_case``: the minimiser is at the pole (see the module docstring). ``converged``: the
    secular-equation solve met its tolerance within ``max_iter``. ``num_iterations``: its Newton /
    bisection steps.
    """

    x_adv: jax.Array
    distance: jax.Array
    geodesic: jax.Array
    exists: jax.Array
    already_error: jax.Array
    hard_case: jax.Array
    converged: jax.Array
    num_iterations: jax.Array


def _sums(*terms):
    """Sums of several ``(d,)`` arrays in ONE variadic reduction: XLA:CPU then fuses the producers into
    a single pass instead of materialising and reducing each term separately (3x faster here)."""
    return lax.reduce(terms, tuple(jnp.zeros((), t.dtype) for t in terms),
                      lambda a, b: tuple(x + y for x, y in zip(a, b)), (terms[0].ndim - 1,))


def _quadric_nearest(alpha, shift, kappa, zz, g0, max_iter, slack, skip):
    """Nearest point of ``Σ γᵢ wᵢ² = κ`` (``γ = α − shift``) to ``z`` (one example; ``zz = z²`` and
    ``g0 = Σ γᵢ zᵢ² − κ`` given). Returns ``(d, fill, exists, hard, converged, iterations)`` with
    ``wᵢ = zᵢ/dᵢ`` off the pivot set and ``wᵢ = fillᵢ`` on it in the hard case. A ``γᵢ`` within
    ``slack`` of 0 counts as 0 when deciding whether the other side exists. The loop body recomputes
    every ``(d,)`` term from ``alpha``, ``z²`` and per-example scalars (``1 + λγᵢ = (Pᵢ + γᵢ t)/c``),
    so that it reads one array per step.
    """
    dtype = zz.dtype
    gamma = alpha - shift
    inside = g0 < 0
    i_hi, i_lo = jnp.argmax(alpha), jnp.argmin(alpha)
    g_hi, g_lo = gamma[i_hi], gamma[i_lo]
    # the other side is {γ·z² > κ} for class 0 (g0 <= 0, ŷ = 0 included), {γ·z² < κ} for class 1
    exists = jnp.where(g0 <= 0, g_hi > slack, (kappa > 0) | (g_lo < -slack))
    pole = inside | (g_lo < 0)
    piv = jnp.where(inside, i_hi, i_lo)
    a_p = alpha[piv]
    c = jnp.where(exists & pole, gamma[piv], 1.0)       # γₚ (pole) or 1
    q = jnp.where(inside | ~pole, 1.0, -1.0).astype(dtype)
    cB = q * kappa
    # κ goes on the side that keeps both sums positive: B for class 0 (q = 1), A for class 1 at a pole
    aK, bK = jnp.where(q < 0, kappa, 0.0), jnp.where(q > 0, kappa, 0.0)
    w = jnp.abs(gamma) * zz
    on_A = q * gamma > 0
    J = pole & (alpha == a_p)
    e_raw = jnp.where(pole, (a_p - alpha) / c, 1.0)
    safe_e2 = jnp.where(J, 1.0, e_raw * e_raw)
    positive = gamma > 0
    wJ, F0, wA, wB, sA, sB, zz_pos, zz_over_gamma = _sums(
        jnp.where(J, w, 0.0), jnp.where(J, 0.0, jnp.where(on_A, w, -w) / safe_e2), jnp.where(on_A, w, 0.0),
        jnp.where(on_A, 0.0, w), jnp.where(on_A, w * gamma, 0.0), jnp.where(on_A, 0.0, w * gamma),
        jnp.where(positive, zz, 0.0), jnp.where(positive, zz / jnp.where(positive, gamma, 1.0), 0.0))
    F0 = F0 - cB
    drop_J = wJ == 0                                    # no J component: drop those terms from the solve
    hard = exists & pole & drop_J & (F0 <= 0) & (g0 != 0) & ~skip
    B_max = wB + cB                                     # B(1) = max B on [0, 1] (eᵢ + bᵢ = 1)

    def denominators(v, flip):
        """``c (1 + λγᵢ)`` at the unknown ``v``: ``Pᵢ + γᵢ v`` (``v = t``; ``Pᵢ = αₚ − αᵢ`` at a pole, exact for
        repeated α, else 1), or ``γₚ − γᵢ v`` (``flip``: ``v = 1 − t``)."""
        P = jnp.where(pole & ~flip, jnp.where((alpha == a_p) & drop_J, c, a_p - alpha), jnp.where(pole, c, 1.0))
        return P + jnp.where(flip, -v, v) * (alpha - shift)

    def secular(v, flip):
        """``(A, B, dA/dt, dB/dt)`` at the unknown ``v`` (one reduction over the ``d`` terms)."""
        gm = alpha - shift
        u = 1.0 / denominators(v, flip)
        term = jnp.abs(gm) * zz * u * u
        slope = term * gm * u
        A, B, dA, dB = _sums(jnp.where(on_A, term, 0.0), jnp.where(on_A, 0.0, term),
                             jnp.where(on_A, slope, 0.0), jnp.where(on_A, 0.0, slope))
        c2 = c * c
        return c2 * A + aK, c2 * B + bK, -2.0 * c2 * dA, -2.0 * c2 * dB

    def newton_step(v, sigma, A, B, dA, dB):
        """ψ = A^{−1/2} − B^{−1/2}: the Newton iterate in ``v`` (``dv = σ dt``) and whether it is usable."""
        ok = (A > 0) & (B > 0)
        rA, rB = lax.rsqrt(jnp.where(ok, A, 1.0)), lax.rsqrt(jnp.where(ok, B, 1.0))
        dpsi = 0.5 * (rB**3 * dB - rA**3 * dA)
        ok = ok & (dpsi > 0)
        new = v - sigma * (rA - rB) / jnp.where(ok, dpsi, 1.0)
        return new, ok & jnp.isfinite(new)

    # at a pole, the unknown is t ∈ (0, 1/2] or (flip) 1 − t ∈ [0, 1/2], whichever holds the root;
    # A − B decreases in t, so G = σ (A − B) decreases in the unknown either way
    half = jnp.asarray(0.5, dtype)
    A_h, B_h, _, _ = secular(half, True)
    flip = pole & exists & ~hard & (A_h - B_h > 0)
    sigma = jnp.where(flip, -1.0, 1.0).astype(dtype)
    # without a pole, each term γᵢzᵢ²/(1 + λγᵢ)² of g(λ) + κ is at most zᵢ²/4λ (AM-GM) and at most
    # zᵢ²/λ²γᵢ, so g(λ) <= 0 from min(‖z₊‖²/4κ, √(Σ zᵢ²/γᵢ / κ)) on
    k_safe = jnp.where(kappa > 0, kappa, 1.0)
    hi0 = jnp.where(pole, half, jnp.minimum(zz_pos / (4.0 * k_safe), jnp.sqrt(zz_over_gamma / k_safe)))
    # two free starts: below √(w_J/B(1)) the pivot term alone exceeds max B; at λ = 0 (t = 1 at a
    # pole, t = 0 without; the unknown is then 0 for flip) every 1 + λγᵢ = 1, so A, B and their slopes
    # are the sums above
    t_bound = jnp.where(drop_J, 0.0, jnp.maximum(jnp.sqrt(wJ / jnp.where(B_max > 0, B_max, 1.0)),
                                                 jnp.finfo(dtype).tiny))
    t_bound = jnp.where(pole & ~flip, jnp.clip(t_bound, 0.0, half), 0.0)
    m = jnp.where(pole, 1.0 / c, 1.0)
    v_k = jnp.where(pole & ~flip, 1.0, 0.0)
    t1, ok1 = newton_step(v_k, sigma, wA + aK, wB + bK, -2.0 * m * sA, -2.0 * m * sB)
    ok1 = ok1 & (t1 > t_bound) & (t1 < hi0)
    t0 = jnp.where(ok1, t1, jnp.where(flip, 0.5 * half, t_bound))
    # Newton converges quadratically here: after a step of relative size 2^-30 the error is ~2^-60
    tol = jnp.asarray(2.0**-30 if dtype == jnp.float64 else 2.0**-14, dtype)
    eps4 = 4 * jnp.finfo(dtype).eps

    def body(state):
        t, lo, hi, it, _ = state
        A, B, dA, dB = secular(t, flip)
        F = sigma * (A - B)
        lo, hi = jnp.where(F >= 0, t, lo), jnp.where(F < 0, t, hi)
        newton, ok = newton_step(t, sigma, A, B, dA, dB)
        take = ok & (newton >= lo) & (newton <= hi)
        mid = jnp.where((lo > 0) & (hi > 16 * lo), jnp.sqrt(lo * hi), 0.5 * (lo + hi))
        t_new = jnp.where(F == 0, t, jnp.where(take, newton, mid))
        # stop on a tiny Newton step, a collapsed bracket, or a step back onto a bracket end
        # (rounding noise in A − B makes the last steps wander by a few ulps)
        done = ((F == 0) | (take & ((jnp.abs(newton - t) <= tol * t) | (newton == lo) | (newton == hi)))
                | (hi - lo <= eps4 * hi))
        return t_new, lo, hi, it + 1, done

    zero = jnp.zeros((), dtype)
    stop = hard | ~exists | (g0 == 0) | skip
    state = (t0, zero, hi0, jnp.zeros((), jnp.int32), stop)
    t, _, _, iters, done = lax.while_loop(lambda s: ~s[4] & (s[3] < max_iter), body, state)
    t = jnp.where(hard, 0.0, t)
    d = denominators(t, flip) / c
    fill = jnp.where(jnp.arange(zz.shape[0]) == piv, jnp.sqrt(jnp.maximum(-F0, 0.0) / jnp.abs(c)), 0.0)
    keep = ~exists | (g0 == 0) | skip
    d = jnp.where(keep | (hard & J), 1.0, d)
    fill = jnp.where(hard & ~keep & J, fill, jnp.nan)
    return d, fill, exists, hard & ~keep, done | hard | keep, iters


def _nearest_one(alpha, z, y, on_manifold: bool, max_iter: int):
    """One example in the eigenbasis: ``(x̂ in z coordinates, distance, geodesic, flags...)``.

    ``x̂ − z`` is formed as ``zᵢ (1 − dᵢ)/dᵢ`` (``1 − dᵢ = −λγᵢ``), without cancellation."""
    dtype = z.dtype
    zz = z * z
    s_z, s_az = _sums(zz, alpha * zz)
    g0 = s_az - 1.0                               # ŷ/(−b): one value decides the class everywhere
    predicted = (g0 > 0).astype(jnp.int32)
    already = (y >= 0) & (predicted != y)        # y = -1: no label, the predicted class
    if on_manifold:
        shift, kappa = 1.0 / s_z, jnp.zeros((), dtype)       # on ‖w‖ = r: Σ(α − 1/r²)w² = Σαw² − 1
        slack = 8.0 * math.sqrt(z.shape[0]) * jnp.finfo(dtype).eps * shift     # rounding of ‖x‖²
    else:
        shift, kappa, slack = jnp.zeros((), dtype), jnp.ones((), dtype), 0.0
    d, fill, exists, hard, conv, iters = _quadric_nearest(alpha, shift, kappa, zz, g0, max_iter, slack, already)
    on_fill = ~jnp.isnan(fill)
    wpt = jnp.where(on_fill, fill, z / d)
    diff = jnp.where(on_fill, fill, z * (1.0 - d) / d)
    w2, d2 = _sums(wpt * wpt, diff * diff)
    if on_manifold:
        r = jnp.sqrt(s_z)
        wn, dn = jnp.sqrt(w2), jnp.sqrt(d2)
        theta = jnp.arctan2(dn, wn)
        p = jnp.where(wn > 0, (r / jnp.where(wn > 0, wn, 1.0)) * wpt, z)
        dist, geo = 2.0 * r * jnp.sin(0.5 * theta), r * theta
    else:
        p, dist = wpt, jnp.sqrt(d2)
        geo = dist
    exists = exists | already
    dist = jnp.where(already, 0.0, jnp.where(exists, dist, jnp.inf))
    geo = jnp.where(already, 0.0, jnp.where(exists, geo, jnp.inf))
    p = jnp.where(already, z, p)
    return p, dist, geo, exists, already, hard, conv | already, iters


def _map_blocks(f, arrays, block: int):
    """``f(*arrays)`` over row blocks of ``block`` (``lax.map``); rows are independent. The last block
    is padded with copies of row 0 (a valid input) and the padding is dropped."""
    n = arrays[0].shape[0]
    if n <= block:
        return f(*arrays)
    k = -(-n // block)
    pad = k * block - n
    arrays = [jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad, *a.shape[1:]))]) if pad else a
              for a in arrays]
    out = lax.map(lambda args: f(*args), tuple(a.reshape(k, block, *a.shape[1:]) for a in arrays))
    return jax.tree.map(lambda o: o.reshape(k * block, *o.shape[2:])[:n], out)


@partial(jax.jit, static_argnames=("on_manifold", "block", "max_iter"))
def _nearest_batch(alpha, U, x, y, *, on_manifold, block, max_iter):
    one = jax.vmap(lambda z, yy: _nearest_one(alpha, z, yy, on_manifold, max_iter))

    def run(xb, yb):
        if U is None:                    # x is given in the eigenbasis
            return one(xb, yb)
        p, *rest = one(xb @ U, yb)
        return (p @ U.T, *rest)

    return NearestErrorResult(*_map_blocks(run, [x, y], block))


def check_options(on_manifold, **ints) -> None:
    """``on_manifold`` is a bool and every keyword a positive int (ValueError otherwise)."""
    if not isinstance(on_manifold, (bool, np.bool_)):
        raise ValueError(f"on_manifold must be True or False, got {on_manifold!r}")
    for name, v in ints.items():
        if not is_int(v):
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _check_inputs(alpha, U, x, y, on_manifold):
    alpha, x = jnp.asarray(alpha), jnp.asarray(x)
    if alpha.ndim != 1:
        raise ValueError(f"alpha must have shape (d,), got {alpha.shape}")
    d = alpha.shape[0]
    eigenbasis = U is None
    U = jnp.eye(d, dtype=jnp.result_type(alpha, float)) if eigenbasis else jnp.asarray(U)
    if U.shape != (d, d):
        raise ValueError(f"U must have shape (d, d) = {(d, d)} to match alpha, got {U.shape}")
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"x must have shape (n, d) with d = {d}, got {x.shape}")
    y = jnp.full((x.shape[0],), -1, jnp.int32) if y is None else jnp.asarray(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape (n,) = ({x.shape[0]},), got {y.shape}")
    if is_concrete(alpha, U, x, y):
        for name, arr in (("alpha", alpha), ("U", U), ("x", x)):
            if not bool(jnp.all(jnp.isfinite(arr))):
                raise ValueError(f"{name} must be finite (got NaN or inf)")
        if not bool(jnp.all((y == 0) | (y == 1) | (y == -1))):
            raise ValueError("y must hold labels 0 (inner sphere) or 1 (outer sphere)")
        gap = 0.0 if eigenbasis or not d else float(jnp.max(jnp.abs(U.T @ U - jnp.eye(d, dtype=U.dtype))))
        if gap > (1e-8 if U.dtype == jnp.float64 else 1e-4):
            raise ValueError(f"U must be orthogonal (max |UᵀU − I| = {gap:.3g}); use alphas_and_axes")
        if on_manifold and bool(jnp.any(jnp.sum(x * x, axis=1) == 0)):
            raise ValueError("on_manifold needs x != 0: the origin lies on no sphere")
    dtype = jnp.result_type(alpha, U, x, float)
    return alpha.astype(dtype), None if eigenbasis else U.astype(dtype), x.astype(dtype), y.astype(jnp.int32)


def exact_nearest_error(alpha, U, x, *, on_manifold: bool, y=None, block: int = 1024,
                        max_iter: int = 100) -> NearestErrorResult:
    """Exact nearest error of the quadratic network for each row of ``x`` (module docstring).

    Args:
      alpha: ``(d,)`` ellipsoid coefficients; U: ``(d, d)`` orthogonal, ``z = Uᵀx``
        (``alphas_and_axes``; any order of ``alpha``, repeats, zeros and negatives allowed), or
        ``None`` when ``x`` is already in the eigenbasis (skips the two ``n·d²`` rotations).
      x: ``(n, d)`` points (on a sphere or not; nonzero when ``on_manifold``).
      on_manifold: ``False``: nearest point of ``R^d`` of the other class; ``True``: nearest point of
        the sphere ``‖x̂‖ = ‖x‖`` of the other class.
      y: optional ``(n,)`` true labels (0 inner, 1 outer). A point whose predicted class differs is
        already an error (distance 0). Without ``y`` the label is the predicted class, so the
        distance is to the decision boundary.
      block: rows per solve (memory: a few ``(block, d)`` arrays). max_iter: cap on solver steps.

    Returns:
      ``NearestErrorResult``. Float64 gives distances to ~1e-15 relative; jittable (``on_manifold``,
      ``block`` and ``max_iter`` static), and ``vmap`` of a single-row call agrees with the batch.

    Example:
      >>> alpha, U = jnp.array([0.5, 2.0]), jnp.eye(2)
      >>> exact_nearest_error(alpha, U, jnp.array([[0.0, 0.3]]), on_manifold=False).distance  # 1/√2 − 0.3
    """
    warn_if_float32("exact_nearest_error", "a secular equation near its pole needs float64 to resolve it")
    check_options(on_manifold, block=block, max_iter=max_iter)
    alpha, U, x, y = _check_inputs(alpha, U, x, y, on_manifold)
    return _nearest_batch(alpha, U, x, y, on_manifold=bool(on_manifold), block=int(block),
                          max_iter=int(max_iter))


class MeanDistance(NamedTuple):
    """Distances from ``n`` uniform points of one sphere to their nearest error.

    ``mean``: Gilmer's ``d(E) = E_x min_{e∈E} ‖x − e‖`` over ALL points (points already in ``E`` count
    0; ``+∞`` if no error exists). ``mean_correct``: the mean over correctly classified points only
    (what a nearest-error attack run from correct points estimates; NaN if there are none).
    ``median``/``median_correct`` and ``quantiles``/``quantiles_correct`` at ``levels`` likewise.
    ``error_rate``: fraction of the points already misclassified (a Monte Carlo ``μ(E)``).
    ``num_correct``: how many were correct. ``distances (n,)``: every point's distance.
    """

    mean: jax.Array
    mean_correct: jax.Array
    median: jax.Array
    median_correct: jax.Array
    levels: jax.Array
    quantiles: jax.Array
    quantiles_correct: jax.Array
    error_rate: jax.Array
    num_correct: jax.Array
    distances: jax.Array


@partial(jax.jit, static_argnames=("n", "on_manifold", "geodesic", "block", "max_iter"))
def _mean_distance(alpha, radius, label, levels, key, *, n, on_manifold, geodesic, block, max_iter):
    d = alpha.shape[0]
    k = -(-n // block)
    one = jax.vmap(lambda z: _nearest_one(alpha, z, label, on_manifold, max_iter))

    def run(i):
        g = jax.random.normal(jax.random.fold_in(key, i), (block, d), alpha.dtype)
        z = radius * g / jnp.sqrt(jnp.sum(g * g, axis=1, keepdims=True))
        _, dist, geo, _, already, *_ = one(z)
        return jnp.where(geodesic, geo, dist), already

    dist, already = lax.map(run, jnp.arange(k))
    dist, already = dist.reshape(-1)[:n], already.reshape(-1)[:n]
    correct = ~already
    count = jnp.sum(correct)
    mean_c = jnp.sum(jnp.where(correct, dist, 0.0)) / jnp.where(count > 0, count, 1)
    mean_c = jnp.where(count > 0, mean_c, jnp.nan)
    masked = jnp.where(correct, dist, jnp.nan)
    return MeanDistance(mean=jnp.mean(dist), mean_correct=mean_c, median=jnp.median(dist),
                        median_correct=jnp.nanmedian(masked), levels=levels,
                        quantiles=jnp.quantile(dist, levels), quantiles_correct=jnp.nanquantile(masked, levels),
                        error_rate=jnp.mean(already.astype(alpha.dtype)), num_correct=count, distances=dist)


def exact_mean_distance(alpha, *, sphere: str = "inner", R=1.3, n: int, key, on_manifold: bool = True,
                        geodesic: bool = False, quantiles=DEFAULT_QUANTILES, block: int = 1024,
                        max_iter: int = 100) -> MeanDistance:
    """Exact ``d(E)`` of a quadratic network on one sphere, by Monte Carlo over its points (Gilmer §5).

    Draws ``n`` uniform points of the inner (radius 1, label 0) or outer (radius ``R``, label 1)
    sphere and computes each one's exact nearest error (``exact_nearest_error``; on the sphere when
    ``on_manifold``, else in ``R^d``). The distribution of distances is rotation invariant, so the
    points are drawn directly in the eigenbasis (``z = Uᵀx`` is uniform when ``x`` is) and no ``U``
    is needed. Compare with Theorem 5.1: ``cap_distance_bound(error_rate, d)`` bounds ``mean`` (the
    on-manifold chordal ``d(E)`` of the inner sphere).

    Args:
      alpha: ``(d,)``. sphere: ``"inner"`` or ``"outer"``. R: outer radius. n: number of points.
      key: PRNG key (block ``i`` of ``block`` points uses ``fold_in(key, i)``). geodesic: report
        ``rθ`` instead of the chordal distance (on the manifold). quantiles: levels in ``[0, 1]``.

    Returns:
      ``MeanDistance`` (see its docstring for exactly what is averaged).

    Example:
      >>> exact_mean_distance(jnp.array([0.7, 0.8, 1.3]), n=10_000, key=jax.random.key(0)).mean
    """
    warn_if_float32("exact_mean_distance", "a secular equation near its pole needs float64 to resolve it")
    check_sphere(sphere)
    R = check_radius(R)
    alpha = jnp.asarray(alpha)
    if alpha.ndim != 1:
        raise ValueError(f"alpha must have shape (d,), got {alpha.shape}")
    if is_concrete(alpha) and not bool(jnp.all(jnp.isfinite(alpha))):
        raise ValueError("alpha must be finite (got NaN or inf)")
    check_options(on_manifold, n=n, block=block, max_iter=max_iter)
    levels = np.asarray(quantiles, dtype=np.float64)
    if levels.ndim != 1 or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"quantiles must be a sequence of levels in [0, 1], got {quantiles!r}")
    dtype = jnp.result_type(alpha, float)
    radius = jnp.asarray(1.0 if sphere == "inner" else R, dtype)
    label = jnp.asarray(0 if sphere == "inner" else 1, jnp.int32)
    return _mean_distance(alpha.astype(dtype), radius, label, jnp.asarray(levels, dtype), key, n=int(n),
                          on_manifold=bool(on_manifold), geodesic=bool(geodesic),
                          block=int(min(block, n)), max_iter=int(max_iter))
