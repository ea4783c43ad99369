"""An ensemble of K image classifiers of one architecture: the mean of their class probabilities.

The ensemble's logits are the log of the members' mean softmax probability,

    ℓ(x) = log( (1/K) Σₖ softmax(fₖ(x)) ) = logsumexpₖ log_softmax(fₖ(x)) − log K,

so ``softmax(ℓ)`` is the mean probability, ``argmax ℓ`` the ensemble's class, and FGSM on the
cross-entropy of ``ℓ`` attacks the ensemble as a whole (Goodfellow et al. 2015: "an ensemble of
twelve maxout networks" still errs on 91.1% of the examples made against it). The members'
parameters are stacked along a leading axis (`stack_members`) and the members are evaluated with
``vmap``, so one compilation serves any K.

Example::

    members = stack_members([v0, v1, v2])
    logits = ensemble_logits(recipe.module, members, x_test)          # (N, 10)
    x_adv = ensemble_fgsm(recipe.module, members, x_test, y_test, 0.25, clip=True)
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import attacks

from . import models as im
from .evaluate import padded_chunks


def stack_members(variables: Sequence) -> dict:
    """The members' variables (pytrees of one structure) stacked along a new leading axis ``K``."""
    if len(variables) < 1:
        raise ValueError("an ensemble needs at least one member")
    structures = {jax.tree_util.tree_structure(v) for v in variables}
    if len(structures) != 1:
        raise ValueError("ensemble members must share one architecture (their parameter trees differ)")
    return jax.tree_util.tree_map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *variables)


def _check_softmax_model(module) -> None:
    if isinstance(module, (im.RBFNetwork, im.LogisticRegression)):
        raise ValueError(f"an ensemble averages softmax probabilities; {type(module).__name__} has none "
                         "(use a softmax model: softmax, FC…, maxout, conv)")


def ensemble_apply_fn(module):
    """``f(stacked, x) -> ℓ (10,)`` for ONE example: the log of the members' mean softmax probability."""
    _check_softmax_model(module)
    one = im.apply_fn(module)

    def f(stacked, x):
        logp = jax.nn.log_softmax(jax.vmap(one, in_axes=(0, None))(stacked, x), axis=-1)   # (K, 10)
        return jax.scipy.special.logsumexp(logp, axis=0) - math.log(logp.shape[0])

    return f


@functools.lru_cache(maxsize=None)
def _batched(module):
    return jax.jit(jax.vmap(ensemble_apply_fn(module), in_axes=(None, 0)))


def ensemble_logits(module, stacked, x, *, batch: int = 1000) -> np.ndarray:
    """The ensemble's logits ``ℓ (N, 10)`` on images ``x (N, 28, 28)`` (host NumPy, chunks of ``batch``)."""
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"ensemble_logits: empty input or no batch axis (x has shape {x.shape})")
    x = x.reshape(x.shape[0], -1)
    f = _batched(module)
    return np.concatenate([np.asarray(f(stacked, c))[:k] for c, k in padded_chunks(x, min(batch, x.shape[0]))])


def ensemble_fgsm(module, stacked, x, y, eps, *, clip: bool, batch: int = 1000) -> np.ndarray:
    """FGSM examples ``x + ε sign(∇ₓ CE(ℓ(x), y))`` against the whole ensemble (clipped to [0, 1] when
    ``clip``), ``(N, 28, 28)`` like ``x``, in chunks of ``batch`` (padded; one compilation)."""
    shape = np.shape(x)
    if len(shape) < 2 or shape[0] == 0:
        raise ValueError(f"ensemble_fgsm: empty input or no batch axis (x has shape {shape})")
    xf = np.asarray(x, np.float32).reshape(shape[0], -1)
    y = np.asarray(y, np.int32)
    if y.shape != (shape[0],):
        raise ValueError(f"y must have shape ({shape[0]},), got {y.shape}")
    f = ensemble_apply_fn(module)
    b = min(batch, shape[0])
    out = []
    for (c, k), (cy, _) in zip(padded_chunks(xf, b), padded_chunks(y, b)):
        res = attacks.fgsm(f, jnp.asarray(c), jnp.asarray(cy), eps=eps, bounds=(0.0, 1.0) if clip else None,
                           params=stacked)
        out.append(np.asarray(res.x_adv)[:k])
    return np.concatenate(out).reshape(shape)
