"""Flax Linen models for the two-sphere task (Gilmer et al. 2018, §3-4).

Every model here maps a batch ``x (B, d)`` to one logit per example ``(B,)``; a positive
logit means "outer sphere" (label 1). ``logit_fn(model, variables)`` returns the per-example
logit function ``x (d,) -> scalar`` in eval mode that attacks and theory use (DESIGN.md,
"Contracts").
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class SphereMLP(nn.Module):
    """ReLU network with BatchNorm on the hidden layers and one logit (Gilmer §3).

    ``features=(1000, 1000)`` is the paper's ``ReLU.w1000.2``; ``(2000,) * 8`` its ``ReLU.w2000.8``.
    Layer: Dense (no bias) -> BatchNorm -> ReLU for every hidden width, then Dense(1) (no BatchNorm
    on the readout). A bias before BatchNorm is redundant (BatchNorm's shift replaces it) and harmful
    in practice: its exact gradient is zero, so Adam turns float noise into lr-sized steps that make
    runs depend on reduction order (device count). ``train=True`` normalises with batch statistics and updates ``batch_stats``;
    ``train=False`` uses the running averages.

    Shapes: ``x (B, d) -> logits (B,)``.
    """

    features: Sequence[int] = (1000, 1000)
    momentum: float = 0.99
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for width in self.features:
            x = nn.Dense(width, use_bias=False, dtype=self.dtype)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, dtype=self.dtype)(x)
            x = nn.relu(x)
        return nn.Dense(1, dtype=self.dtype)(x)[..., 0]


class QuadraticNet(nn.Module):
    """Quadratic network ``ŷ(x) = w · Σ_j (W x)_j² + b`` (Gilmer §4).

    Parameters (in ``variables["params"]``): ``W (h, d)`` with no bias, scalars ``w`` and ``b``.
    With ``WᵀW = V diag(s²) Vᵀ`` the boundary ``ŷ = 0`` is the ellipsoid ``Σ αᵢ zᵢ² = 1``,
    ``αᵢ = w sᵢ² / (−b)``, ``z = Vᵀx`` (see ``theory.alphas``).

    Shapes: ``x (B, d) -> logits (B,)`` (a single ``(d,)`` input gives a scalar).
    """

    hidden: int = 1000
    w_init: float = 1.0
    b_init: float = -1.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        d = x.shape[-1]
        W = self.param("W", nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=0),
                       (self.hidden, d))
        w = self.param("w", nn.initializers.constant(self.w_init), ())
        b = self.param("b", nn.initializers.constant(self.b_init), ())
        h = x @ W.T
        return w * jnp.sum(h * h, axis=-1) + b


def logit_fn(model: nn.Module, variables) -> Callable[[jax.Array], jax.Array]:
    """Per-example logit function ``x (d,) -> scalar`` in eval mode (running BatchNorm statistics).

    This is the contract attacks and theory rely on: it closes over ``variables`` and adds and
    removes a batch axis of one, so it can be ``vmap``-ped, differentiated and jitted.
    """

    def f(x):
        return model.apply(variables, x[None], train=False)[0]

    return f


AUTO_CPU_BLOCK = 2048


def batch_logits(model: nn.Module, variables, x: jax.Array, *, block: int | str | None = "auto") -> jax.Array:
    """Eval-mode logits for a batch ``x (B, d) -> (B,)``.

    ``block`` bounds the rows per device of one model call (``map_row_blocks``): ``"auto"`` is
    ``AUTO_CPU_BLOCK = 2048`` on CPU and the whole batch elsewhere; ``None`` the whole batch; an
    int that many rows. On CPU, XLA's GEMMs run slower on very tall operands: ``jit(batch_logits)``
    of the 500-1000-1000-1 ReLU net at B = 10,000 ran at 89 GFLOP/s in one call and 126 in five
    blocks of 2,000 (a 2048² matmul: ~125), with bitwise-equal logits (benchmark (1)). Blocking
    changes nothing but speed: rows are evaluated independently in eval mode.
    """
    rows = eval_block(block)
    return map_row_blocks(lambda xb: model.apply(variables, xb, train=False), x, rows)


def eval_block(block: int | str | None = "auto") -> int | None:
    """Rows per model call for ``block`` (see ``batch_logits``): an int >= 1, or ``None`` for all."""
    if isinstance(block, str) and block == "auto":
        return AUTO_CPU_BLOCK if jax.default_backend() == "cpu" else None
    return _positive_int_or_none(block, "block", " or 'auto'")


def _positive_int_or_none(value, name: str, alternatives: str = ""):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, None{alternatives}, got {value!r}")
    return int(value)


def map_row_blocks(f: Callable, x: jax.Array, max_rows: int | None, *, groups: int | None = None):
    """``f(x)`` computed on blocks of rows of ``x (B, ...)``, one block after another (``lax.map``).

    ``f`` must treat rows independently (``f(x)[i]`` depends on ``x[i]`` only) and return arrays
    (or a pytree of them) with leading axis ``B``. The rows are seen as ``groups`` contiguous
    groups (default ``jax.device_count()``: the shards of a batch-sharded ``x``), each split into
    ``k`` contiguous runs of ``r <= max_rows`` rows; block ``j`` is run ``j`` of every group, so a
    sharded batch stays on its devices and each device evaluates at most ``max_rows`` rows per
    call. ``x`` is zero-padded to ``groups · k · r`` rows (one compiled shape; the padding rows are
    dropped). With ``max_rows=None`` or ``B <= groups · max_rows`` it is ``f(x)``.
    """
    max_rows = _positive_int_or_none(max_rows, "max_rows")
    groups = _positive_int_or_none(groups, "groups")
    B = x.shape[0]
    G = jax.device_count() if groups is None else groups
    if max_rows is None or B <= G * max_rows:
        return f(x)
    k = -(-B // (G * max_rows))
    r = -(-B // (G * k))
    pad = G * k * r - B
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    tail = x.shape[1:]
    blocks = jnp.swapaxes(x.reshape(G, k, r, *tail), 0, 1)           # (k, G, r, ...)

    def one(xb):
        return jax.tree.map(lambda o: o.reshape(G, r, *o.shape[1:]), f(xb.reshape(G * r, *tail)))

    out = jax.lax.map(one, blocks)                                   # leaves (k, G, r, ...)
    return jax.tree.map(lambda o: jnp.swapaxes(o, 0, 1).reshape(G * k * r, *o.shape[3:])[:B], out)


def perfect_quadratic_variables(d: int, h: int, R: float = 1.3, *, key: jax.Array,
                                alpha_range: tuple[float, float] | None = None,
                                dtype=jnp.float32):
    """Variables of a *perfect* ``QuadraticNet``: every ``αᵢ`` inside ``[1/R², 1]`` (Gilmer §4).

    Draws a random orthonormal basis ``V (d, d)`` and ``αᵢ`` uniform in ``alpha_range`` (default: the
    middle half of ``[1/R², 1]``, so the solution is perfect with a margin), then sets ``w = 1``,
    ``b = −1`` and ``W = diag(√α) Vᵀ`` padded with zero rows (``h ≥ d``) so that
    ``(w/−b)·WᵀW = V diag(α) Vᵀ``. Requires ``h ≥ d`` (with ``h < d`` some ``αᵢ = 0 < 1/R²``:
    no perfect solution exists).

    Returns ``{"params": {"W": (h, d), "w": (), "b": ()}}``.
    """
    if h < d:
        raise ValueError(f"a perfect quadratic net needs h >= d (got h={h}, d={d}): with h < d at "
                         f"least d - h of the alphas are 0, outside [1/R^2, 1]")
    if not R > 1:
        raise ValueError(f"outer radius R must be > 1, got {R}")
    lo, hi = (1 / R**2, 1.0)
    if alpha_range is None:
        span = hi - lo
        alpha_range = (lo + span / 4, hi - span / 4)
    a_lo, a_hi = alpha_range
    if not (lo <= a_lo <= a_hi <= hi):
        raise ValueError(f"alpha_range {alpha_range} must lie inside [1/R^2, 1] = [{lo:.6g}, 1]")
    k_basis, k_alpha = jax.random.split(key)
    q, r = jnp.linalg.qr(jax.random.normal(k_basis, (d, d), dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    q = q * jnp.sign(jnp.diag(r))[None, :]  # Haar-distributed orthogonal matrix
    alpha = jax.random.uniform(k_alpha, (d,), minval=a_lo, maxval=a_hi)
    W = (jnp.sqrt(alpha)[:, None] * q.T)
    W = jnp.concatenate([W, jnp.zeros((h - d, d), W.dtype)], axis=0)
    return {"params": {"W": W.astype(dtype), "w": jnp.asarray(1.0, dtype), "b": jnp.asarray(-1.0, dtype)}}


def count_params(variables) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables.get("params", variables))))
