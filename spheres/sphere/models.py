"""Flax Linen models for the two-sphere task (Gilmer et al. 2018, §3-4).

Every model here maps a batch ``x (B, d)`` to one logit per example ``(B,)``; a positive
logit means "outer sphere" (label 1). `logit_fns` is the one builder of a model's eval-mode logit
functions (per example, for attacks and theory; batched, for evaluation); ``logit_fn(model,
variables)`` closes the per-example one over its variables.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..sharding import eval_block, map_row_blocks


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
    epsilon: float = 1e-5            # BatchNorm's variance epsilon (Flax's default; TensorFlow's is 1e-3)
    kernel_init: str = "lecun_normal"   # Dense kernels: "lecun_normal" (Flax) or "glorot_uniform" (TensorFlow)

    @nn.compact
    def __call__(self, x, train: bool = False):
        init = KERNEL_INITS[self.kernel_init]()
        for width in self.features:
            x = nn.Dense(width, use_bias=False, dtype=self.dtype, kernel_init=init)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                             dtype=self.dtype)(x)
            x = nn.relu(x)
        return nn.Dense(1, dtype=self.dtype, kernel_init=init)(x)[..., 0]


KERNEL_INITS = {"lecun_normal": nn.initializers.lecun_normal, "glorot_uniform": nn.initializers.glorot_uniform}
"""`SphereMLP.kernel_init` names: Flax's default and TensorFlow/Keras's ``Dense`` default."""


def population_batch_stats(model: SphereMLP, variables, sample) -> dict:
    """Exact population BatchNorm statistics of a `SphereMLP` over a sample, layer by layer, float64.

    For a Dense → BN → ReLU stack, layer ``l``'s statistics are the mean and the (biased, as Flax's
    BatchNorm) variance over the sample of its pre-BN activations ``zₗ = hₗ₋₁ Wₗ``, where ``hₗ₋₁`` is
    computed with layers ``< l`` already normalised by their population statistics. With them the
    eval-mode net normalises exactly as the train-mode net would on a batch equal to the sample.

    ``sample``: an array ``(n, d)`` or a callable returning a fresh iterable of ``(m, d)`` chunks
    (it is iterated once per layer). Moments are merged over chunks with Chan's pairwise formula.
    Returns ``batch_stats`` ``{"BatchNorm_l": {"mean": (w,), "var": (w,)}}`` as float64 numpy arrays.
    """
    chunks = (lambda: (sample,)) if not callable(sample) else sample
    params = jax.device_get(variables["params"])
    stats = {}

    def hidden(x, upto):
        h = np.asarray(x, np.float64)
        for i in range(upto):
            z = h @ np.asarray(params[f"Dense_{i}"]["kernel"], np.float64)
            bn, st = params[f"BatchNorm_{i}"], stats[f"BatchNorm_{i}"]
            z = (z - st["mean"]) / np.sqrt(st["var"] + model.epsilon)
            h = np.maximum(z * np.asarray(bn["scale"], np.float64) + np.asarray(bn["bias"], np.float64), 0.0)
        return h

    for layer in range(len(model.features)):
        kernel = np.asarray(params[f"Dense_{layer}"]["kernel"], np.float64)
        n, mean, m2 = 0, 0.0, 0.0
        for x in chunks():
            z = hidden(x, layer) @ kernel
            k = z.shape[0]
            cm = z.mean(axis=0)
            cm2 = ((z - cm) ** 2).sum(axis=0)
            delta = cm - mean
            mean = mean + delta * (k / (n + k))
            m2 = m2 + cm2 + delta**2 * (n * k / (n + k))
            n += k
        stats[f"BatchNorm_{layer}"] = {"mean": np.asarray(mean), "var": np.asarray(m2 / n)}
    return stats


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


class LogitFns(NamedTuple):
    """A model's eval-mode logit functions, built once per model (`logit_fns`).

    ``per_example(variables, x (d,)) -> scalar``: what attacks and theory take (with ``params=``).
    ``batched(variables, x (B, d)) -> (B,)``: evaluation; on CPU in row blocks (`batch_logits`).
    """

    per_example: Callable
    batched: Callable


@functools.lru_cache(maxsize=64)
def logit_fns(model: nn.Module) -> LogitFns:
    """The one builder of a sphere model's logit functions: the same function objects for the same
    model, so every jitted evaluation or attack of it compiles once."""

    def per_example(variables, x):
        return model.apply(variables, x[None], train=False)[0]

    def batched(variables, x):
        return batch_logits(model, variables, x)

    return LogitFns(per_example, batched)


def logit_fn(model: nn.Module, variables) -> Callable[[jax.Array], jax.Array]:
    """Per-example logit function ``x (d,) -> scalar`` in eval mode (running BatchNorm statistics),
    closing over ``variables``: the form attacks and theory take without ``params=``."""
    f = logit_fns(model).per_example
    return lambda x: f(variables, x)


def batch_logits(model: nn.Module, variables, x: jax.Array, *, block: int | str | None = "auto") -> jax.Array:
    """Eval-mode logits for a batch ``x (B, d) -> (B,)``.

    ``block`` bounds the rows per device of one model call (`spheres.sharding.map_row_blocks`):
    ``"auto"`` is `spheres.sharding.AUTO_CPU_BLOCK` rows on CPU and the whole batch elsewhere;
    ``None`` the whole batch; an int that many rows. XLA:CPU's GEMMs run slower on very tall
    operands; blocking changes nothing but speed (rows are independent in eval mode).
    """
    rows = eval_block(block)
    return map_row_blocks(lambda xb: model.apply(variables, xb, train=False), x, rows)


def perfect_start(R: float, inner: float, outer: float) -> tuple[float, float]:
    """``(s, ᾱ)`` such that a quadratic net ``s·(Σ αᵢ zᵢ² − 1)`` with mean α ``ᾱ`` has sigmoid output
    ``inner`` on the inner sphere and ``outer`` on the outer one (at the mean: ``Σ αᵢ zᵢ² ≈ r²ᾱ``).

    From ``s(ᾱ − 1) = logit(inner)`` and ``s(R²ᾱ − 1) = logit(outer)``: ``sᾱ(R² − 1) = logit(outer) −
    logit(inner)``, so ``s = sᾱ − logit(inner)`` and ``ᾱ = sᾱ / s``. Gilmer et al.'s start
    (0.0016, 0.9994) at R = 1.3 gives s ≈ 26.5, ᾱ ≈ 0.758, inside [1/R², 1]. Raises when ᾱ falls
    outside (1/R², 1): no perfect net has those outputs.
    """
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    if not (0 < inner < 0.5 < outer < 1) or not R > 1:
        raise ValueError(f"need 0 < inner < 0.5 < outer < 1 and R > 1, got inner={inner}, outer={outer}, R={R}")
    s_alpha = (logit(outer) - logit(inner)) / (R * R - 1)
    s = s_alpha - logit(inner)
    alpha = s_alpha / s
    if not 1 / R**2 < alpha < 1:
        raise ValueError(f"outputs ({inner}, {outer}) need a mean alpha of {alpha:.4g}, outside "
                         f"(1/R^2, 1) = ({1 / R**2:.4g}, 1): no perfect net has them")
    return s, alpha


def perfect_quadratic_variables(d: int, h: int, R: float = 1.3, *, key: jax.Array,
                                alpha_range: tuple[float, float] | None = None,
                                outputs: tuple[float, float] | None = None, dtype=jnp.float32):
    """Variables of a *perfect* ``QuadraticNet``: every ``αᵢ`` inside ``[1/R², 1]`` (Gilmer §4).

    Draws a random orthonormal basis ``V (d, d)`` and ``αᵢ`` uniform in ``alpha_range`` (default: the
    middle half of ``[1/R², 1]``, so the solution is perfect with a margin), then sets ``w = 1``,
    ``b = −1`` and ``W = diag(√α) Vᵀ`` padded with zero rows (``h ≥ d``) so that
    ``(w/−b)·WᵀW = V diag(α) Vᵀ``. Requires ``h ≥ d`` (with ``h < d`` some ``αᵢ = 0 < 1/R²``:
    no perfect solution exists).

    ``outputs=(inner, outer)``: scale the logits to those sigmoid outputs at the mean α
    (`perfect_start`): ``w = s``, ``b = −s`` (the α are unchanged by the scale) and, unless
    ``alpha_range`` is given, α uniform in the widest interval around ``ᾱ`` of half its distance
    to the nearer end of ``[1/R², 1]``.

    Returns ``{"params": {"W": (h, d), "w": (), "b": ()}}``.
    """
    if h < d:
        raise ValueError(f"a perfect quadratic net needs h >= d (got h={h}, d={d}): with h < d at "
                         f"least d - h of the alphas are 0, outside [1/R^2, 1]")
    if not R > 1:
        raise ValueError(f"outer radius R must be > 1, got {R}")
    lo, hi = (1 / R**2, 1.0)
    scale = 1.0
    if outputs is not None:
        scale, mean = perfect_start(R, *outputs)
        if alpha_range is None:
            half = min(mean - lo, hi - mean) / 2
            alpha_range = (mean - half, mean + half)
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
    return {"params": {"W": W.astype(dtype), "w": jnp.asarray(scale, dtype), "b": jnp.asarray(-scale, dtype)}}


def count_params(variables) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables.get("params", variables))))
