"""Upper Lipschitz bounds of networks layer by layer (Szegedy et al. 2013, §4.3).

A feed-forward network ``φ = φ_L ∘ … ∘ φ_1`` is Lipschitz with constant at most ``Π_k L_k``, the product
of the per-layer operator norms (Szegedy §4.3). ReLU, max-pooling, maxout and tanh are
non-expansive (``L = 1``); sigmoid has ``L = ¼`` (we use 1, still an upper bound); a bias does not
change ``L``.

* Dense layer ``x ↦ Wx``: ``‖W‖₂``, the largest singular value.
* Convolution (Szegedy §4.3, also Sedghi, Gupta & Long 2019): a multi-channel circular convolution
  on an ``H × W`` grid is block-diagonalised by the 2-D DFT; its norm is
  ``sup_ξ σ_max(K̂(ξ))`` with ``K̂(ξ) (cin × cout)`` the DFT of the kernel taps at frequency ``ξ``.
  With stride ``s = (s_h, s_w)`` the layer is ``subsample_s ∘ conv``; subsampling folds the
  ``s_h s_w`` aliased frequencies ``ξ = η + (k_h H/s_h, k_w W/s_w)`` onto each output frequency ``η``, so
  ``‖layer‖ = max_η σ_max([K̂(η + k) stacked over the s_h s_w aliases]) / √(s_h s_w)``.
  (Derivation: ``Ŷ(η) = (1/s) Σ_k K̂(η + k)ᵀ X̂(η + k)`` and Parseval on both grids.)

Padding. ``"CIRCULAR"`` is the exact operator norm of ``flax.linen.Conv(padding="CIRCULAR")`` (wrap
padding ``((k−1)//2, k//2)``, then a VALID strided correlation). Zero padding (``"SAME"``, ``"VALID"``)
is not circular, and the circular norm on the same ``H × W`` grid does **not** bound it in general
(e.g. the 1-D kernel ``[1, 0, −1]`` on a grid of 2 folds to zero circularly, while the zero-padded
operator has norm 1). For zero padding the function returns a rigorous upper bound instead: the
zero-padded layer is a compression (restrict input, restrict output) of the circular layer with the
same anchor on a grid enlarged until no tap wraps around, and that circular norm is computed.

Everything here is ``jax.numpy`` and jittable (shapes, strides and padding static).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._common import is_int, warn_if_float32


def dense_lipschitz(W) -> jax.Array:
    """Operator norm ``‖W‖₂`` (largest singular value) of a dense layer (Szegedy §4.3).

    Works for Flax kernels ``(in, out)`` and for ``(out, in)`` matrices alike (same singular values).
    Shapes: ``(..., a, b) -> (...)``.
    """
    W = jnp.asarray(W)
    if W.ndim < 2:
        raise ValueError(f"W must be a matrix, got shape {W.shape}")
    return jnp.linalg.svd(W, compute_uv=False)[..., 0]


def _pair(v, name) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(is_int(i) for i in t):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return t


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's ``"SAME"`` padding ``(low, high)`` of one spatial axis of length ``size``: the output
    has ``ceil(size / stride)`` entries, the total padding is
    ``max((out − 1)·stride + kernel − size, 0)``, and an odd pixel goes on the high side.

    Example: ``same_padding(28, 5, 2) == (1, 2)``; ``same_padding(28, 5, 1) == (2, 2)``.
    """
    for name, v in (("size", size), ("kernel", kernel), ("stride", stride)):
        if not is_int(v):
            raise ValueError(f"same_padding: {name} must be a positive int, got {v!r}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _grid_and_anchor(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """Grid size and anchor ``lo`` (output ``i`` reads inputs ``s·i + u − lo``) for one spatial axis."""
    if padding == "CIRCULAR":
        if n % s:
            raise ValueError(f"circular strided convolution needs the input size {n} divisible by the stride {s}")
        return n, (k - 1) // 2
    if padding == "SAME":
        out = -(-n // s)
        lo = same_padding(n, k, s)[0]
    else:                                   # VALID
        out = (n - k) // s + 1
        if out < 1:
            raise ValueError(f"VALID convolution with kernel {k} > input {n}")
        lo = 0
    j_max = s * (out - 1) + k - 1 - lo      # largest input index read (zeros beyond n − 1)
    g = max(n + lo, j_max + 1, n)
    return -(-g // s) * s, lo               # the smallest multiple of s with no wrap-around


def conv_lipschitz(kernel, *, stride=1, input_shape, padding: str = "CIRCULAR") -> jax.Array:
    """Operator norm of a (strided, multi-channel) 2-D convolution via the 2-D DFT (Szegedy §4.3).

    ``‖conv‖ = max_η σ_max(A(η)) / √(s_h s_w)`` with ``A(η)`` the ``(s_h s_w cin) × cout`` stack of the
    kernel's DFT blocks at the ``s_h s_w`` frequencies that alias onto output frequency ``η`` (module
    docstring). Exact for ``padding="CIRCULAR"`` (``flax.linen.Conv(padding="CIRCULAR")``, input sizes
    divisible by the stride); a rigorous upper bound for zero padding ``"SAME"`` / ``"VALID"`` (computed
    on an enlarged grid where the zero-padded layer is a compression of a circular one). Cost:
    ``H W/(s_h s_w)`` SVDs of size ``(s_h s_w cin) × cout``.

    Args:
      kernel: ``(kh, kw, cin, cout)`` (Flax ``HWIO`` layout); no feature groups, no dilation.
      stride: int or ``(s_h, s_w)``.
      input_shape: ``(H, W)`` spatial size of the layer's input (``(H, W, C)`` is accepted).
      padding: ``"CIRCULAR"`` (exact), ``"SAME"`` or ``"VALID"`` (upper bound).

    Returns: a scalar.

    Example:
      >>> k = jnp.zeros((3, 3, 1, 1)).at[1, 1, 0, 0].set(2.0)      # 2 × identity
      >>> theory.conv_lipschitz(k, input_shape=(8, 8))             # 2.0
    """
    warn_if_float32("conv_lipschitz", "the bound is computed in float32 (relative error ~1e-6)")
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"kernel must have shape (kh, kw, cin, cout), got {kernel.shape}")
    padding = padding.upper()
    if padding not in ("CIRCULAR", "SAME", "VALID"):
        raise ValueError(f"padding must be 'CIRCULAR', 'SAME' or 'VALID', got {padding!r}")
    sh, sw = _pair(stride, "stride")
    H, W = (int(v) for v in tuple(input_shape)[:2])
    if len(tuple(input_shape)) == 3 and tuple(input_shape)[2] != kernel.shape[2]:
        raise ValueError(f"input channels {input_shape[2]} != kernel cin {kernel.shape[2]}")
    kh, kw, cin, cout = kernel.shape
    Hg, lo_h = _grid_and_anchor(H, kh, sh, padding)
    Wg, lo_w = _grid_and_anchor(W, kw, sw, padding)
    return _strided_circular_norm(kernel, grid=(Hg, Wg), anchor=(lo_h, lo_w), stride=(sh, sw))


@partial(jax.jit, static_argnames=("grid", "anchor", "stride"))
def _strided_circular_norm(kernel, *, grid, anchor, stride):
    kh, kw, cin, cout = kernel.shape
    (Hg, Wg), (lo_h, lo_w), (sh, sw) = grid, anchor, stride
    # embed the taps at their circular offsets u − lo (summing taps that coincide mod the grid)
    rows = (jnp.arange(kh) - lo_h) % Hg
    cols = (jnp.arange(kw) - lo_w) % Wg
    emb = jnp.zeros((Hg, Wg, cin, cout), kernel.dtype).at[rows[:, None], cols[None, :]].add(kernel)
    spec = jnp.fft.fft2(emb, axes=(0, 1))                           # (Hg, Wg, cin, cout)
    Hp, Wp = Hg // sh, Wg // sw
    spec = spec.reshape(sh, Hp, sw, Wp, cin, cout).transpose(1, 3, 0, 2, 4, 5)
    blocks = spec.reshape(Hp, Wp, sh * sw * cin, cout)
    sv = jnp.linalg.svd(blocks, compute_uv=False)[..., 0]
    return jnp.max(sv) / math.sqrt(sh * sw)


def operator_norm_power_iteration(linear_fn: Callable, input_shape: Sequence[int], *, key,
                                  num_iters: int = 1000, dtype=None) -> jax.Array:
    """``‖A‖₂`` of a linear map by power iteration on ``AᵀA`` (``Aᵀ`` from ``jax.linear_transpose``).

    Returns ``‖A v‖`` for the final unit vector ``v``, a lower bound that converges to the norm like
    ``(σ₂/σ₁)^{2·num_iters}``. Useful to check ``conv_lipschitz`` and for layers with no closed form
    (e.g. zero-padded convolutions). ``linear_fn`` maps an array of ``input_shape`` to any shape.
    """
    if isinstance(num_iters, bool) or not isinstance(num_iters, (int, np.integer)) or num_iters < 0:
        raise ValueError(f"num_iters must be an int >= 0, got {num_iters!r}")
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    x0 = jax.random.normal(key, tuple(input_shape), dtype)
    adjoint = jax.linear_transpose(linear_fn, x0)

    @jax.jit
    def run(v0):
        def body(_, v):
            w = adjoint(linear_fn(v))[0]
            return w / jnp.linalg.norm(w)
        v = lax.fori_loop(0, num_iters, body, v0 / jnp.linalg.norm(v0))
        return jnp.linalg.norm(linear_fn(v))

    return run(x0)


class ConvSpec(NamedTuple):
    """How a convolution kernel in a params tree is applied: its input's spatial shape, stride, padding."""

    input_shape: tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: str = "CIRCULAR"


class LipschitzBound(NamedTuple):
    """Product bound ``bound = Π per_layer`` and the per-layer norms keyed by module path.

    ``skipped`` lists parameter paths that were not bounded (e.g. a ``QuadraticNet``'s ``W``, which is
    not a linear layer, or a BatchNorm without running statistics). A non-empty ``skipped`` means
    ``bound`` does not cover those parts of the model.
    """

    bound: jax.Array
    per_layer: dict
    skipped: tuple


def _walk(tree, prefix=()):
    if isinstance(tree, Mapping):
        yield prefix, tree
        for k, v in tree.items():
            yield from _walk(v, prefix + (str(k),))


def model_lipschitz_bound(variables, conv_specs: Mapping[str, ConvSpec] | None = None, *,
                          bn_epsilon: float = 1e-5) -> LipschitzBound:
    """Upper Lipschitz bound of a sequential Flax model: the product of per-layer bounds (Szegedy §4.3).

    Walks ``variables["params"]`` (or a bare params tree). Every module with a ``kernel``:

    * ``(in, out)`` Dense kernel → ``dense_lipschitz``;
    * ``(kh, kw, cin, cout)`` Conv kernel → ``conv_lipschitz`` with the ``ConvSpec`` given in
      ``conv_specs`` under the module's path (``"Conv_0"``, ``"encoder/Conv_1"``); a conv kernel
      without a spec is an error.

    A BatchNorm module (``scale`` in params, ``var`` in ``variables["batch_stats"]`` at the same path)
    in eval mode is the per-channel affine map ``x ↦ scale (x − mean)/√(var + ε) + bias``, bounded by
    ``max |scale| / √(var + ε)`` (``bn_epsilon`` must match the module's ``epsilon``; Flax's default is
    1e-5). Biases are ignored (they do not change the constant); activations and pooling are assumed
    1-Lipschitz. Other parameters are listed in ``skipped``. Valid for feed-forward (sequential)
    networks; residual connections are not handled.

    Returns: ``LipschitzBound(bound, per_layer, skipped)``.
    """
    params = variables.get("params", variables) if isinstance(variables, Mapping) else variables
    stats = variables.get("batch_stats", {}) if isinstance(variables, Mapping) else {}
    conv_specs = dict(conv_specs or {})
    per_layer: dict = {}
    skipped: list = []
    covered: set = set()
    for path, node in _walk(params):
        name = "/".join(path)
        if "kernel" in node and not isinstance(node["kernel"], Mapping):
            k = jnp.asarray(node["kernel"])
            if k.ndim == 2:
                per_layer[name] = dense_lipschitz(k)
            elif k.ndim == 4:
                if name not in conv_specs:
                    raise ValueError(f"conv kernel at {name!r} needs a ConvSpec in conv_specs "
                                     f"(have {sorted(conv_specs)})")
                spec = ConvSpec(*conv_specs[name]) if not isinstance(conv_specs[name], ConvSpec) else conv_specs[name]
                per_layer[name] = conv_lipschitz(k, stride=spec.stride, input_shape=spec.input_shape,
                                                 padding=spec.padding)
            else:
                skipped.append(name + "/kernel")
            covered.update({name + "/kernel", name + "/bias"})
        elif "scale" in node and not isinstance(node["scale"], Mapping):
            st = stats
            for p in path:
                st = st.get(p, {}) if isinstance(st, Mapping) else {}
            if isinstance(st, Mapping) and "var" in st:
                factor = jnp.abs(jnp.asarray(node["scale"])) / jnp.sqrt(jnp.asarray(st["var"]) + bn_epsilon)
                per_layer[name] = jnp.max(factor)
                covered.update({name + "/scale", name + "/bias"})
    for path, node in _walk(params):
        for k, v in node.items():
            leaf = "/".join(path + (str(k),))
            if not isinstance(v, Mapping) and leaf not in covered:
                skipped.append(leaf)
    bound = jnp.prod(jnp.stack(list(per_layer.values()))) if per_layer else jnp.asarray(1.0)
    return LipschitzBound(bound=bound, per_layer=per_layer, skipped=tuple(sorted(set(skipped))))
