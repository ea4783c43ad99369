"""Certified L2 radii for ReLU (+ BatchNorm) networks by linear bound propagation (CROWN).

The network is a chain of affine layers ``h_k = W_k x_{k−1} + b_k`` (``W_k (n_k, n_{k−1})``) with
``x_k = ReLU(h_k)`` between them and one logit ``f = h_L`` (class 1 iff ``f > 0``). BatchNorm in eval
mode is affine and is folded into the Dense before it (``fold_batchnorm``, ``layers_from_sphere_mlp``).
To certify the class of ``x`` we lower-bound ``g = s f`` (``s = +1`` for class 1, ``−1`` for class 0).

**CROWN** (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with General
Activation Functions"). Given bounds ``l ≤ h_k ≤ u`` on a layer over the input set, each ReLU is
sandwiched between two lines: exact for stable neurons (``u <= 0``: 0, ``l >= 0``: ``h``); for unstable
ones the upper chord ``ReLU(h) <= u (h − l)/(u − l)`` and the adaptive lower line ``ReLU(h) >= a h``
with ``a = 1`` if ``u >= −l`` else 0 (both valid for any ``a ∈ [0, 1]``). A linear objective ``Λ x_k`` is
bounded below by taking the lower line where ``Λ >= 0`` and the upper one where ``Λ < 0``; substituting
``h_k = W_k x_{k−1} + b_k`` moves the objective one layer down, and at the input ``Λ x + c`` is minimised
over the input set in closed form. Intermediate bounds are computed the same way, layer by layer
(layer ``m``'s lower and upper bounds by one backward pass with the ``2 n_m`` rows ``[W_m; −W_m]``), each
relaxation using the bounds of the layers below. Every step is a valid inequality on the input set,
so the final ``a·x + c`` lower-bounds ``g`` on it (in floating point, up to rounding of the bound
computation itself: no directed rounding).

**Input sets.** Off the manifold: the ball ``B(x₀, ε)``, where ``min a·x + c = a·x₀ + c − ε‖a‖``. On the
manifold (``‖x‖ = r = ‖x₀‖``): the cap ``C(x₀, ε) = {‖x‖ = r, ‖x − x₀‖ <= ε}`` ⊂ ``B(x₀, ε)``, so the
ball's intermediate bounds and the final linear bound stay valid on it, and the final bound is
minimised over the cap EXACTLY: with ``u = x₀/r``, ``a = p u + a_⊥``, ``φ = atan2(‖a_⊥‖, p)`` and a point
at angle ``θ`` from ``x₀``, ``a·x >= r(p cos θ − ‖a_⊥‖ sin θ) = r‖a‖ cos(θ + φ)`` (equality for ``x`` in
the plane of ``u`` and ``−a_⊥``), and the cap is ``θ <= θ_ε = 2 arcsin(ε/2r)``; ``cos`` decreases on
``[0, π]``, so ``min_C a·x + c = c + r‖a‖ cos(min(φ + θ_ε, π))``. This is the exact minimum over
``sphere ∩ ball``, so it dominates any relaxation of the sphere constraint such as the slab
``x₀·δ ∈ [−ε²/2, 0]`` (``δ = x − x₀``) with a Lagrange multiplier. Intermediate bounds are kept on the ball
(in high dimension a hidden unit's weight is nearly orthogonal to ``x₀``, where the cap gains
``O(ε²)``; the radial logit direction is where it matters), which also makes the on-manifold
certificate at least the off-manifold one.

**The certificate.** For the relaxation built at radius ``ε`` the bound is positive on every set of
radius ``ρ <= ρ*(ε)`` (``ρ* = (a·x₀ + c)/‖a‖`` off the manifold; ``2r sin(θ*/2)``, ``θ* = arccos(−c/r‖a‖) − φ``
on it), and it is only valid up to ``ε``: ``min(ε, ρ*(ε))`` is a certified radius for EVERY ``ε``. The
search brackets the crossing ``ρ*(ε) = ε`` (``ρ*(ε) >= ε`` iff the bound keeps its sign at ``ε``): it
starts from ``[0, ρ₀]`` with ``ρ₀`` the first-order radius at ``x₀`` (gradient), takes ``steps``
safeguarded secant / bisection steps in a ``lax`` loop, and returns the best ``min(ε, ρ*(ε))`` seen.
``ρ*`` is typically a cliff (it collapses to 0 within a few percent past the crossing), so most of a cold
search is spent finding the crossing's scale; points of one net on one sphere cross within ~±10 % of
each other, so a warm start (``init`` = a pilot's median radius, steps of ``WARM_FACTOR``) reaches in 3
evaluations what a cold start reaches in 8.

Why our own: ``jax_verify`` 1.0, the only JAX verification library on PyPI, does not import with the
JAX this project uses (it calls ``jax.lax.standard_naryop``, removed from JAX).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ._common import is_concrete
from .nearest_error import _map_blocks, check_options

FLAX_BN_EPSILON = 1e-5      # flax.linen.BatchNorm's default epsilon, which SphereMLP uses
WARM_FACTOR = 1.15     # warm start (``init``): steps of ×1.15 from it (radii of one net's points spread by ~±10 %)


def fold_batchnorm(W, b, scale, bias, mean, var, *, epsilon=FLAX_BN_EPSILON):
    """Fold eval-mode BatchNorm into the affine layer before it.

    ``BN(W x + b) = s ⊙ (W x + b − mean) + bias`` with ``s = scale/√(var + ε)``, i.e. ``W' = diag(s) W``,
    ``b' = s ⊙ (b − mean) + bias``. Shapes: ``W (n_out, n_in)``, the rest ``(n_out,)``. Pure arrays.
    """
    s = scale / jnp.sqrt(var + epsilon)
    return s[:, None] * W, s * (b - mean) + bias


def layers_from_sphere_mlp(variables, *, bn_epsilon=FLAX_BN_EPSILON) -> list[tuple[jax.Array, jax.Array]]:
    """The folded affine layers ``[(W_k (n_k, n_{k−1}), b_k (n_k,)), ...]`` of a ``SphereMLP``.

    Reads ``variables = {"params": {Dense_i: {kernel (in, out)[, bias]}, BatchNorm_i: {scale, bias}},
    "batch_stats": {BatchNorm_i: {mean, var}}}``: ``Dense_i`` (no bias) → ``BatchNorm_i`` → ReLU for each
    hidden layer, then the readout ``Dense_L`` with a bias. ``bn_epsilon`` must match the module's
    BatchNorm (flax's default ``1e-5``, as in ``SphereMLP``). The last layer has ``n_L = 1``.
    """
    try:
        params, stats = variables["params"], variables["batch_stats"]
    except (KeyError, TypeError) as e:
        raise ValueError("expected SphereMLP variables {'params': ..., 'batch_stats': ...}") from e
    dense = sorted((k for k in params if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    if not dense or len(dense) != sum(k.startswith("BatchNorm_") for k in params) + 1:
        raise ValueError(f"expected Dense_0..Dense_L with BatchNorm_0..BatchNorm_(L-1); got {sorted(params)}")
    layers = []
    for i, name in enumerate(dense):
        kernel = jnp.asarray(params[name]["kernel"])
        W = kernel.T
        b = jnp.asarray(params[name].get("bias", jnp.zeros(W.shape[0], W.dtype)))
        if i < len(dense) - 1:
            bn, st = params[f"BatchNorm_{i}"], stats[f"BatchNorm_{i}"]
            W, b = fold_batchnorm(W, b, bn["scale"], bn["bias"], st["mean"], st["var"], epsilon=bn_epsilon)
        layers.append((W, b))
    return layers


def forward(layers, x):
    """The folded network's logits: ``x (..., d) -> (..., n_L)`` (ReLU between the layers)."""
    for k, (W, b) in enumerate(layers):
        x = x @ W.T + b
        if k < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def _relaxation(l, u):
    """Lines ``a_lo h <= ReLU(h) <= a_up h + c_up`` on ``[l, u]`` (module docstring)."""
    active, unstable = l >= 0, (l < 0) & (u > 0)
    width = jnp.where(unstable, u - l, 1.0)
    a_up = jnp.where(active, 1.0, jnp.where(unstable, u / width, 0.0))
    c_up = jnp.where(unstable, -a_up * l, 0.0)
    a_lo = jnp.where(active | (unstable & (u >= -l)), 1.0, 0.0)
    return a_lo, a_up, c_up


def _lower_linear(A, c, layers, relax, m):
    """Rows ``A (rows, n_{m−1})``, ``c (rows,)`` of a bound ``A x_{m−1} + c`` on the objective, moved down
    to the input: returns ``(A (rows, d), c)`` with objective ``>= A x + c`` wherever the bounds hold."""
    for k in range(m - 1, 0, -1):                      # x_k = ReLU(h_k), h_k = W_k x_{k−1} + b_k
        a_lo, a_up, c_up = relax[k - 1]
        neg = jnp.minimum(A, 0.0)
        c = c + neg @ c_up
        A = jnp.maximum(A, 0.0) * a_lo + neg * a_up
        W, b = layers[k - 1]
        c = c + A @ b
        A = A @ W
    return A, c


def _ball_lower(A, c, x0, eps):
    return A @ x0 + c - eps * jnp.sqrt(jnp.sum(A * A, axis=-1))


def _final_linear(layers, x0, eps, sign):
    """CROWN's ``(a (d,), c)`` with ``sign·f(x) >= a·x + c`` on ``B(x0, eps)``."""
    W1, b1 = layers[0]
    n1 = jnp.sqrt(jnp.sum(W1 * W1, axis=1))
    h1 = W1 @ x0 + b1
    relax = [_relaxation(h1 - eps * n1, h1 + eps * n1)]
    for m in range(2, len(layers)):
        W, b = layers[m - 1]
        A, c = _lower_linear(jnp.concatenate([W, -W]), jnp.concatenate([b, -b]), layers, relax, m)
        lo = _ball_lower(A, c, x0, eps)
        n = W.shape[0]
        relax.append(_relaxation(lo[:n], -lo[n:]))
    W, b = layers[-1]
    A, c = _lower_linear(sign * W[:1], sign * b[:1], layers, relax, len(layers))
    return A[0], c[0]


def _radius(a, c, x0, on_manifold):
    """Largest ``ρ`` with ``a·x + c > 0`` on the ball / cap of radius ``ρ`` (0 if not even at ``x0``)."""
    na = jnp.sqrt(jnp.sum(a * a))
    at_x0 = a @ x0 + c
    if not on_manifold:
        rho = at_x0 / jnp.where(na > 0, na, 1.0)
        return jnp.where(at_x0 > 0, jnp.where(na > 0, rho, jnp.inf), 0.0)
    r = jnp.sqrt(jnp.sum(x0 * x0))
    p = a @ x0 / r
    phi = jnp.arctan2(jnp.sqrt(jnp.maximum(na * na - p * p, 0.0)), p)
    cos_max = -c / jnp.where(na > 0, r * na, 1.0)
    theta = jnp.clip(jnp.arccos(jnp.clip(cos_max, -1.0, 1.0)) - phi, 0.0, jnp.pi)
    theta = jnp.where((na == 0) | (cos_max < -1.0), jnp.pi, theta)
    return jnp.where(at_x0 > 0, 2.0 * r * jnp.sin(0.5 * theta), 0.0)


def _cap_lower(a, c, x0, eps):
    """``min a·x + c`` over the cap ``{‖x‖ = ‖x0‖, ‖x − x0‖ <= eps}`` (module docstring)."""
    r = jnp.sqrt(jnp.sum(x0 * x0))
    na = jnp.sqrt(jnp.sum(a * a))
    p = a @ x0 / r
    phi = jnp.arctan2(jnp.sqrt(jnp.maximum(na * na - p * p, 0.0)), p)
    theta = 2.0 * jnp.arcsin(jnp.clip(eps / (2.0 * r), 0.0, 1.0))
    return c + r * na * jnp.cos(jnp.minimum(phi + theta, jnp.pi))


def _logit(layers, x):
    return forward(layers, x)[0]


def _bounds_one(layers, x0, eps, on_manifold):
    out = []
    for sign in (1.0, -1.0):
        a, c = _final_linear(layers, x0, eps, sign)
        out.append(_cap_lower(a, c, x0, eps) if on_manifold else a @ x0 + c - eps * jnp.sqrt(jnp.sum(a * a)))
    return out[0], -out[1]


def _certify_one(layers, x0, y, max_radius, init, on_manifold, steps):
    f0, grad = jax.value_and_grad(_logit, argnums=1)(layers, x0)
    predicted = (f0 > 0).astype(jnp.int32)
    label = jnp.where(y >= 0, y, predicted)
    already = predicted != label
    sign = jnp.where(label == 1, 1.0, -1.0).astype(x0.dtype)
    rho0 = _radius(sign * grad, sign * (f0 - grad @ x0), x0, on_manifold)
    cap = jnp.minimum(jnp.where(jnp.isfinite(rho0), rho0, max_radius), max_radius)
    warm = init > 0
    # cold: first ε = the first-order radius, then steps of ×8; warm: first ε = init, steps of ×WARM_FACTOR
    first = jnp.where(warm, jnp.minimum(init, max_radius), cap)
    factor = jnp.where(warm, WARM_FACTOR, 8.0).astype(x0.dtype)

    def rho_at(eps):
        a, c = _final_linear(layers, x0, eps, sign)
        return _radius(a, c, x0, on_manifold)

    def step(i, state):
        lo, hi, phi_lo, phi_hi, failed, best, upper, kept, dead, flat = state
        width = hi - lo
        secant = lo + width * phi_lo / jnp.where(phi_lo - phi_hi > 0, phi_lo - phi_hi, 1.0)
        eps = jnp.clip(secant, lo + 0.05 * width, hi - 0.05 * width)
        # the secant needs a φ that varies smoothly. Bisect instead when the upper end is dead (ρ* = 0:
        # the relaxation collapses, typically within a few percent of the crossing) or the lower one
        # is flat (ρ* beyond the search range: the bound is positive on the whole sphere)
        mid = jnp.where(hi > 4 * lo, jnp.sqrt(lo * hi), 0.5 * (lo + hi))
        eps = jnp.where(flat | dead, jnp.where(lo > 0, mid, hi / factor), eps)
        # no failure seen yet: grow from the last success towards the cap (ρ*(lo) bounds the crossing)
        eps = jnp.where(failed, eps, jnp.minimum(hi, factor * lo))
        eps = jnp.where(i == 0, first, eps)
        rho = rho_at(eps)
        best = jnp.maximum(best, jnp.minimum(eps, rho))
        holds = rho >= eps                     # the bound keeps its sign on the whole set of radius eps
        phi = rho - eps
        # Illinois: when one end is kept twice in a row, halve its φ so the secant moves off it
        phi_lo = jnp.where(holds, phi, jnp.where(kept == 1, 0.5 * phi_lo, phi_lo))
        phi_hi = jnp.where(holds, jnp.where(kept == -1, 0.5 * phi_hi, phi_hi), phi)
        # before the first failure the upper end is only a cap: ρ*(ε) >= ε* for a success at ε (ρ* is
        # non-increasing: a larger set gives a looser relaxation), so the cap shrinks to ρ
        hi = jnp.where(holds, jnp.where(failed, hi, jnp.minimum(jnp.maximum(hi, eps), rho)), eps)
        return (jnp.where(holds, eps, lo), hi, phi_lo, phi_hi, failed | ~holds, best,
                jnp.where(holds, upper, jnp.minimum(upper, eps)),
                jnp.where(holds, -1, 1).astype(jnp.int32), jnp.where(holds, dead, rho <= 0),
                jnp.where(holds, rho >= cap, flat))

    zero = jnp.zeros((), x0.dtype)
    false = jnp.zeros((), bool)
    # φ(ε) = ρ*(ε) − ε with ρ*(0) = ρ₀; `kept`: +1 lo was kept by the last step, −1 hi was
    state = (zero, jnp.maximum(cap, first), cap, -cap, false, zero, max_radius, jnp.zeros((), jnp.int32),
             false, false)
    _, _, _, _, _, best, upper, _, _, _ = lax.fori_loop(0, steps, step, state)
    certified = jnp.where(already | (rho0 <= 0), 0.0, best)
    return certified, jnp.where(already, 0.0, upper), predicted, already


class CertificateResult(NamedTuple):
    """Certified radii of a batch. ``radius (n,)``: no point of the set (ball, or sphere cap with the
    chordal distance) of that radius around ``x`` changes the class (0 for misclassified points).
    ``upper (n,)``: the smallest radius at which this relaxation failed (it cannot certify beyond;
    ``max_radius`` if it never failed). ``predicted``: the network's class at ``x``. ``already_error``:
    ``x`` is misclassified (only with labels)."""

    radius: jax.Array
    upper: jax.Array
    predicted: jax.Array
    already_error: jax.Array


@partial(jax.jit, static_argnames=("on_manifold", "steps", "block"))
def _certify_batch(layers, x, y, max_radius, init, *, on_manifold, steps, block):
    one = jax.vmap(lambda xx, yy, mr, e0: _certify_one(layers, xx, yy, mr, e0, on_manifold, steps))
    return CertificateResult(*_map_blocks(lambda a, b, c, e: one(a, b, c, e), [x, y, max_radius, init], block))


@partial(jax.jit, static_argnames=("on_manifold",))
def _bounds_batch(layers, x, eps, *, on_manifold):
    return jax.vmap(lambda xx, e: _bounds_one(layers, xx, e, on_manifold))(x, eps)


def _check(layers, x, name="x"):
    layers = [(jnp.asarray(W), jnp.asarray(b)) for W, b in layers]
    if not layers:
        raise ValueError("layers must be a non-empty list of (W, b)")
    d = layers[0][0].shape[1] if layers[0][0].ndim == 2 else None
    for k, (W, b) in enumerate(layers):
        if W.ndim != 2 or b.shape != (W.shape[0],) or (k and W.shape[1] != layers[k - 1][0].shape[0]):
            raise ValueError(f"layer {k}: W must be (n_k, n_(k-1)) chained with the layer before and "
                             f"b (n_k,); got W {W.shape}, b {b.shape}")
    if layers[-1][0].shape[0] != 1:
        raise ValueError(f"the last layer must have one output (a logit), got {layers[-1][0].shape[0]}")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, d) with d = {d}, got {x.shape}")
    if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} must be finite")
    dtype = jnp.result_type(x, *[W for W, _ in layers], float)
    return [(W.astype(dtype), b.astype(dtype)) for W, b in layers], x.astype(dtype)


def _per_example(v, n, name, dtype):
    v = jnp.broadcast_to(jnp.asarray(v, dtype), (n,)) if jnp.ndim(v) == 0 else jnp.asarray(v, dtype)
    if v.shape != (n,):
        raise ValueError(f"{name} must be a scalar or shape ({n},), got {v.shape}")
    if is_concrete(v) and not bool(jnp.all(v >= 0)):
        raise ValueError(f"{name} must be >= 0")
    return v


def logit_bounds(layers: Sequence, x, eps, *, on_manifold: bool = False):
    """CROWN bounds ``(lower (n,), upper (n,))`` on the logit over the ball ``B(x, eps)`` or, with
    ``on_manifold``, the cap ``{‖x̂‖ = ‖x‖, ‖x̂ − x‖ <= eps}``. ``x (n, d)``; ``eps`` scalar or ``(n,)``."""
    layers, x = _check(layers, x)
    check_options(on_manifold)
    eps = _per_example(eps, x.shape[0], "eps", x.dtype)
    return _bounds_batch(layers, x, eps, on_manifold=bool(on_manifold))


def certify_l2(layers: Sequence, x, y=None, *, on_manifold: bool, steps: int = 8, max_radius=None,
               init=None, block: int = 32) -> CertificateResult:
    """Certified L2 radius of each row of ``x`` for a ReLU network (module docstring).

    Args:
      layers: ``[(W_k, b_k), ...]`` affine layers with ReLU between them and one output
        (``layers_from_sphere_mlp``). x: ``(n, d)``. y: optional labels (0/1); default the predicted
        class. A misclassified point gets radius 0.
      on_manifold: certify on the sphere ``‖x̂‖ = ‖x‖`` (chordal radius) instead of the ball.
      steps: CROWN evaluations per point (each one gives a valid radius; more steps close the bracket).
      max_radius: search limit, scalar or ``(n,)`` (default ``2‖x‖``, the sphere's diameter).
      init: optional warm start, scalar or ``(n,)``: the radius tried first (e.g. the median radius of
        similar points of the same net), with steps of ×2 from it instead of ×8 from the first-order
        radius. Only the search path changes: every radius returned is certified either way.
      block: points per batched evaluation (memory: two ``(2 n_k, n_{k−1})`` matrices per point).

    Returns:
      ``CertificateResult``. Jitted and vmapped; float32 or float64 (the dtype of ``x`` and layers).

    Example:
      >>> layers = layers_from_sphere_mlp(variables)
      >>> certify_l2(layers, x, on_manifold=True).radius
    """
    check_options(on_manifold, steps=steps, block=block)
    layers, x = _check(layers, x)
    n = x.shape[0]
    if is_concrete(x) and on_manifold and bool(jnp.any(jnp.sum(x * x, axis=1) == 0)):
        raise ValueError("on_manifold needs x != 0: the origin lies on no sphere")
    y = jnp.full((n,), -1, jnp.int32) if y is None else jnp.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if is_concrete(y) and not bool(jnp.all((y == 0) | (y == 1) | (y == -1))):
        raise ValueError("y must hold labels 0 or 1")
    max_radius = 2.0 * jnp.sqrt(jnp.sum(x * x, axis=1)) if max_radius is None else max_radius
    max_radius = _per_example(max_radius, n, "max_radius", x.dtype)
    init = _per_example(0.0 if init is None else init, n, "init", x.dtype)
    return _certify_batch(layers, x, y.astype(jnp.int32), max_radius, init, on_manifold=bool(on_manifold),
                          steps=int(steps), block=int(block))
