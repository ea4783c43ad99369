"""Concentric-sphere data (Gilmer et al. 2018, §3).

Inner sphere: radius 1, label 0. Outer sphere: radius ``R`` (paper: 1.3), label 1. Points are
uniform on each sphere: ``x = r · z / ‖z‖`` with ``z ~ N(0, I_d)``. All samplers are key-first,
pure and jittable; ``d``, ``n`` and ``R`` are Python numbers (static shapes).

Two ways to feed training:

* ``online_batch(key, step, batch, d, R)``: a fresh balanced batch every step, derived by
  ``fold_in(key, step)``, so step ``t`` always sees the same data (reproducible, resumable).
* ``FiniteSet``: a fixed training set of ``N`` points drawn once; ``finite_batch`` gives the
  ``step``-th batch of an epoch-wise reshuffled pass over it (also a pure function of the step).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def sample_sphere(key: jax.Array, n: int, d: int, radius: float | jax.Array = 1.0,
                  dtype=jnp.float32) -> jax.Array:
    """``n`` points uniform on the sphere of radius ``radius`` in ``R^d``: shape ``(n, d)``.

    ``x = r z/‖z‖``, ``z ~ N(0, I_d)`` (rotation invariance of the Gaussian). ``radius`` may be a
    scalar or an ``(n,)`` array of per-point radii.
    """
    z = jax.random.normal(key, (n, d), dtype=dtype)
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return jnp.asarray(radius, dtype)[..., None] * z if jnp.ndim(radius) else radius * z


def sample_two_spheres(key: jax.Array, n: int, d: int, R: float = 1.3, dtype=jnp.float32):
    """A balanced two-sphere sample: ``x (n, d)``, ``y (n,)`` int32 in {0, 1}.

    Exactly ``n // 2`` points per sphere when ``n`` is even (the first half inner, label 0, the
    second half outer, label 1; the order carries no information for a per-example model). For odd
    ``n`` the extra point is on the outer sphere.
    """
    y = (jnp.arange(n) >= n // 2).astype(jnp.int32)
    radius = jnp.where(y == 1, R, 1.0).astype(dtype)
    return sample_sphere(key, n, d, radius, dtype), y


def online_batch(key: jax.Array, step: jax.Array | int, batch: int, d: int, R: float = 1.3,
                 dtype=jnp.float32):
    """The training batch of step ``step`` of an online stream: ``sample_two_spheres(fold_in(key, step))``."""
    return sample_two_spheres(jax.random.fold_in(key, step), batch, d, R, dtype)


class FiniteSet(NamedTuple):
    """A fixed training set: ``x (N, d)``, ``y (N,)``, and the key that drives epoch shuffles."""

    x: jax.Array
    y: jax.Array
    shuffle_key: jax.Array


def make_finite_set(key: jax.Array, n: int, d: int, R: float = 1.3, dtype=jnp.float32) -> FiniteSet:
    """Draw ``N = n`` training points once (balanced) and a key for the per-epoch shuffles."""
    k_data, k_shuffle = jax.random.split(key)
    x, y = sample_two_spheres(k_data, n, d, R, dtype)
    return FiniteSet(x, y, k_shuffle)


def epoch_permutation(data: FiniteSet, epoch: jax.Array | int) -> jax.Array:
    """The shuffle of epoch ``epoch``: a permutation of ``range(N)`` from ``fold_in(shuffle_key, epoch)``."""
    return jax.random.permutation(jax.random.fold_in(data.shuffle_key, epoch), data.x.shape[0])


def steps_per_epoch(n: int, batch: int) -> int:
    """Full batches per pass over ``n`` points (the last ``n mod batch`` points of a shuffle are dropped)."""
    if n < batch:
        raise ValueError(f"finite training set of {n} points is smaller than the batch ({batch}); "
                         f"use train_size >= batch")
    return n // batch


def finite_batch(data: FiniteSet, perm: jax.Array, step: jax.Array | int, batch: int):
    """Batch ``step`` of epoch-wise shuffled passes over ``data``, given that epoch's permutation.

    Epoch ``e = step // (N // batch)`` uses ``perm = epoch_permutation(data, e)`` (computed once per
    epoch by the caller); batch ``i = step mod (N // batch)`` is ``perm[i·batch : (i+1)·batch]``.
    So the data of a step is a pure function of the step: training resumes exactly.
    """
    i = step % steps_per_epoch(data.x.shape[0], batch)
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
    return data.x[idx], data.y[idx]
