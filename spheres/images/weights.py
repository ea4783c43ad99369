"""A model's weight matrices in forward order, and Szegedy's per-layer weight decay over them.

`decayed_kernels` lists the kernels on the classification path (the autoencoder's decoder is not
on it) in forward order; the per-layer weight decay of Szegedy et al. 2013 (`weight_decay_penalty`)
and the per-layer Lipschitz bounds (`spheres.images.adversarial.layer_bounds`) both walk that list.
"""

from __future__ import annotations

import re
from typing import Sequence

import jax
import jax.numpy as jnp


def decayed_kernels(params) -> list[tuple[str, jax.Array]]:
    """The model's weight matrices in forward order: ``[(path, kernel), ...]``.

    Order: ``encoder, decoder, classifier`` is reduced to ``encoder, classifier`` (the decoder is
    not on the classification path), ``conv_i`` before ``dense_i``/``maxout_i`` sorted by index, the
    output layer (``dense_out``) last.
    """
    flat = {"/".join(str(getattr(k, "key", k)) for k in path[:-1]): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if str(getattr(path[-1], "key", path[-1])) == "kernel"}

    def order(name):
        base = name.split("/")[-1]
        if base in ("encoder",):
            return (0, 0)
        if base == "classifier":
            return (9, 0)
        if base == "dense_out":
            return (8, 0)
        m = re.match(r"(conv|maxout|dense)_(\d+)", base)
        if m:
            return ({"conv": 1, "maxout": 2, "dense": 3}[m.group(1)], int(m.group(2)))
        return (7, 0)

    return [(n, flat[n]) for n in sorted(flat, key=order) if not n.endswith("decoder")]


def weight_decay_penalty(params, lambdas: Sequence[float]) -> jax.Array:
    """Szegedy's per-layer weight decay ``Σ_i λ_i · Σ W_i² / k_i`` (``k_i`` = units of layer ``i``).

    ``lambdas`` has one value per layer of `decayed_kernels` (or one value for all layers). Biases
    are not decayed.
    """
    kernels = decayed_kernels(params)
    lambdas = tuple(lambdas)
    if len(lambdas) == 1:
        lambdas = lambdas * len(kernels)
    if len(lambdas) != len(kernels):
        raise ValueError(f"weight decay has {len(lambdas)} values but the model has {len(kernels)} "
                         f"layers ({', '.join(n for n, _ in kernels)})")
    total = jnp.zeros((), jnp.float32)
    for lam, (_, w) in zip(lambdas, kernels):
        if lam:
            total = total + lam * jnp.sum(jnp.square(w)) / w.shape[-1]
    return total
