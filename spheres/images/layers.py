"""Convolution and pooling layers that train fast inside a ``lax.scan`` on CPU.

`Conv2D` is a ``"SAME"`` 2-D convolution written as im2col (`im2col`) plus one matmul, and
`max_pool_2x2` a 2×2 max-pool written as a reshape plus a max. Both compute the same function with
the same parameters as ``nn.Conv`` / ``nn.max_pool``; they exist because XLA:CPU runs the backward
pass of ``nn.Conv`` (and the select-and-scatter gradient of ``nn.max_pool``) several times slower
inside a loop body than as a standalone program, and a training epoch is a ``scan``. Written with
slices and a dot, forward and backward stay matmuls and pads. ``benchmarks/conv_training.py`` times
both implementations.
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from theory._common import is_int
from theory.lipschitz import same_padding


def im2col(h: jax.Array, kernel: tuple[int, int], stride: int) -> jax.Array:
    """Patches of ``h (B, H, W, C)`` for a ``"SAME"`` convolution: ``(B, H', W', kh·kw·C)`` with the
    feature axis ordered ``(kh, kw, C)``, so ``im2col(h) @ k.reshape(-1, C_out)`` is the convolution
    with an HWIO kernel ``k``. Built from ``kh·kw`` strided slices of the zero-padded input (the
    slices are static: the Python loop runs once, at trace time). Padding: `theory.same_padding`."""
    if getattr(h, "ndim", None) != 4:
        raise ValueError(f"im2col needs images of shape (B, H, W, C), got shape {getattr(h, 'shape', type(h))}")
    if (isinstance(kernel, int) or len(kernel) != 2
            or not all(is_int(k) for k in kernel)):
        raise ValueError(f"im2col: kernel must be a pair of positive ints (kh, kw), got {kernel!r}")
    if not is_int(stride):
        raise ValueError(f"im2col: stride must be a positive int, got {stride!r}")
    kh, kw = kernel
    (t, b), (l, r) = same_padding(h.shape[1], kh, stride), same_padding(h.shape[2], kw, stride)
    hp = jnp.pad(h, ((0, 0), (t, b), (l, r), (0, 0)))
    ho, wo = -(-h.shape[1] // stride), -(-h.shape[2] // stride)
    return jnp.concatenate([hp[:, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride, :]
                            for i in range(kh) for j in range(kw)], axis=-1)


class Conv2D(nn.Module):
    """``"SAME"`` 2-D convolution as im2col + one matmul: the same parameters (``kernel`` HWIO,
    ``bias``), initialisation and outputs as ``nn.Conv(features, kernel_size, strides=stride,
    padding="SAME")`` (tested in float64 to 1e-12), but fast inside ``lax.scan`` on CPU (see the
    module docstring)."""

    features: int
    kernel_size: tuple[int, int] = (5, 5)
    stride: int = 1

    @nn.compact
    def __call__(self, h):
        kh, kw = self.kernel_size
        k = self.param("kernel", _lecun_normal_flat, (kh, kw, h.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return im2col(h, self.kernel_size, self.stride) @ k.reshape(-1, self.features) + b


def _lecun_normal_flat(key, shape, *dtype):
    """``lecun_normal()`` drawn as a ``(kh·kw·C_in, C_out)`` matrix and reshaped: the same values
    as drawing ``shape`` directly (same fan-in, same threefry counters), but XLA:CPU compiles a
    4-D ``random.bits`` much more slowly than a 2-D one."""
    flat = nn.initializers.lecun_normal()(key, (int(np.prod(shape[:-1])), shape[-1]), *dtype)
    return flat.reshape(shape)


def max_pool_2x2(h: jax.Array) -> jax.Array:
    """2×2 max-pool with stride 2 of ``h (B, H, W, C)``, H and W even, as a reshape + max.

    Same values as ``nn.max_pool(h, (2, 2), strides=(2, 2))``; it avoids XLA:CPU's slow
    select-and-scatter gradient. Where a window's maximum is tied the gradient is split equally
    between the tied entries (``nn.max_pool`` gives it to one); after a ReLU the only ties are at
    0, where the ReLU's own gradient is 0, so training is unaffected.
    """
    b, hh, ww, c = h.shape
    if hh % 2 or ww % 2:
        raise ValueError(f"max_pool_2x2 needs even height and width (got {hh}x{ww})")
    return jnp.max(h.reshape(b, hh // 2, 2, ww // 2, 2, c), axis=(2, 4))
