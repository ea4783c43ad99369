"""Shared models for the tests of the attack API (imported by name; not a conftest): a linear binary
MLP trained for a few steps on Gaussian blobs (a real decision boundary), both deterministic."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

D, K, HIDDEN, N = 8, 4, 16, 64


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def quadratic(x, Q, c):
    """``½ xᵀQx + cᵀx``: the strictly convex test objective of the L-BFGS-B tests."""
    return 0.5 * x @ Q @ x + c @ x


def mlp_apply(p, x):
    """Per-example MLP ``x (D,) -> logits (K,)``."""
    return p["W2"] @ jnp.tanh(p["W1"] @ x + p["b1"]) + p["b2"]


@functools.lru_cache(maxsize=None)
def trained_mlp(seed: int = 0, steps: int = 60):
    """``(params, x (N, D), y (N,))``: a D-K MLP after ``steps`` full-batch gradient steps on K
    Gaussian blobs (centres 1.5 apart), float32, fixed seed.  Reaches ~90 % training accuracy,
    so small budgets break some points and not others."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D)) * 1.5
    y = np.arange(N) % K
    x = (centres[y] + rng.normal(size=(N, D))).astype(np.float32)
    p = {"W1": rng.normal(size=(HIDDEN, D)) / np.sqrt(D), "b1": np.zeros(HIDDEN),
         "W2": rng.normal(size=(K, HIDDEN)) / np.sqrt(HIDDEN), "b2": np.zeros(K)}
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
    xs, ys = jnp.asarray(x), jnp.asarray(y, jnp.int32)

    def loss(p):
        z = jax.vmap(mlp_apply, (None, 0))(p, xs)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, ys[:, None], 1)[:, 0])

    step = jax.jit(lambda p: jax.tree.map(lambda a, g: a - 0.5 * g, p, jax.grad(loss)(p)))
    for _ in range(steps):
        p = step(p)
    return p, xs, ys


@functools.lru_cache(maxsize=None)
def linear_binary(seed: int = 0, d: int = 6, b: int = 6):
    """``(f, w, bias, x (b, d), y (b,))`` for z = wᵀx + bias, in float64 (call under x64)."""
    rng = np.random.default_rng(seed)
    w, bias = rng.normal(size=d), 0.3

    def f(x):
        return x @ jnp.asarray(w) + bias

    x = rng.normal(size=(b, d)) * 0.5
    y = (x @ w + bias > 0).astype(np.int32)
    return f, w, bias, x, y
