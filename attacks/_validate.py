"""Input checks at the public boundary, run BEFORE anything is traced or compiled.

Each check raises ``ValueError`` (``TypeError`` for wrong kinds) saying what was wrong and how
to fix it.  Value checks (finite, in bounds, label range) need concrete arrays; when an attack
is itself called inside a user's ``jit`` they are skipped and only the shape checks run.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from attacks._base import LOSSES


def _concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arrays))


def check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(choices)}.")


def check_loss(loss: str) -> None:
    check_choice(loss, "loss", LOSSES)


def check_logit_fn(logit_fn) -> None:
    if not callable(logit_fn):
        raise TypeError(f"logit_fn must be callable (per-example x -> logits), got {type(logit_fn)}.")


def check_batch(x, y, *, label_name: str = "y"):
    """``x (B, *input_shape)`` floating, finite; ``y (B,)`` integer.  Returns jnp arrays."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"x must have a batch axis: shape (B, *input_shape), got {x.shape}. "
            "For a single example pass x[None] and y[None].")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be floating point, got dtype {x.dtype}; cast it, e.g. x.astype(jnp.float32).")
    y = jnp.asarray(y)
    if y.dtype == jnp.bool_:
        y = y.astype(jnp.int32)
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"{label_name} must have shape (B,) = ({x.shape[0]},) to match x {x.shape}, got {y.shape}.")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{label_name} must hold integer class labels, got dtype {y.dtype}.")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0).")
    if _concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        bad = np.flatnonzero((~np.isfinite(np.asarray(x).reshape(x.shape[0], -1))).any(axis=1))
        raise ValueError(
            f"x contains NaN or inf in examples {bad[:10].tolist()}{'...' if bad.size > 10 else ''}; "
            "attacks need finite inputs.")
    return x, y.astype(jnp.int32)


def check_nonnegative(value, name: str, batch: int, dtype, *, positive: bool = False):
    """A scalar or per-example ``(B,)`` non-negative (or positive) finite number -> ``(B,)`` array."""
    arr = jnp.asarray(value, dtype=dtype)
    if arr.ndim == 0:
        arr = jnp.broadcast_to(arr, (batch,))
    if arr.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape (B,) = ({batch},), got {arr.shape}.")
    if _concrete(arr):
        a = np.asarray(arr)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, got {a[~np.isfinite(a)][:5]}.")
        if positive and np.any(a <= 0):
            raise ValueError(f"{name} must be > 0, got min {a.min()}.")
        if np.any(a < 0):
            raise ValueError(f"{name} must be >= 0, got min {a.min()}; a negative radius is meaningless.")
    return arr


def check_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_bounds(bounds, x):
    """``None`` or ``(lo, hi)`` broadcastable to ``x``, ``lo <= hi``, and ``x`` inside.

    Returns ``(lo, hi)`` broadcast to ``x.shape`` (so they vmap with the batch) or ``None``.
    """
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be None or a pair (lo, hi), got {bounds!r}.")
    try:
        lo = jnp.broadcast_to(jnp.asarray(bounds[0], x.dtype), x.shape)
        hi = jnp.broadcast_to(jnp.asarray(bounds[1], x.dtype), x.shape)
    except ValueError as err:
        raise ValueError(
            f"bounds must broadcast to x's shape {x.shape} (scalars, input_shape, or (B, *input_shape)): "
            f"{err}") from None
    if _concrete(x, lo, hi):
        if bool(jnp.any(jnp.isnan(lo)) | jnp.any(jnp.isnan(hi))):
            raise ValueError("bounds contain NaN.")
        if bool(jnp.any(lo > hi)):
            raise ValueError("bounds have lo > hi somewhere; pass (lo, hi) with lo <= hi.")
        below = float(jnp.max(lo - x))
        above = float(jnp.max(x - hi))
        if below > 0 or above > 0:
            raise ValueError(
                f"bounds exclude x: x is below lo by up to {max(below, 0.0):.3g} and above hi by up to "
                f"{max(above, 0.0):.3g}. Clip x into the box first, widen bounds, or pass bounds=None "
                "(e.g. sphere data has no box).")
    return lo, hi


def _struct(tree):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def _hashable_struct(tree):
    leaves, treedef = jax.tree_util.tree_flatten(_struct(tree))
    return treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves)


@functools.lru_cache(maxsize=512)
def _output_shape(logit_fn, params_key, x_key):
    # Cached so that repeated calls do not re-trace logit_fn (keeps "no retrace" exact).
    params_def, params_leaves = params_key
    params = None if params_def is None else jax.tree_util.tree_unflatten(
        params_def, [jax.ShapeDtypeStruct(s, d) for s, d in params_leaves])
    x = jax.ShapeDtypeStruct(*x_key)
    if params is None:
        out = jax.eval_shape(logit_fn, x)
    else:
        out = jax.eval_shape(logit_fn, params, x)
    return out.shape if hasattr(out, "shape") else None


def num_classes(logit_fn: Callable, params: Any, x) -> int:
    """Evaluate ``logit_fn``'s output shape abstractly: 2 for a scalar logit, else K."""
    x_key = (tuple(x.shape[1:]), str(x.dtype))
    params_key = (None, ()) if params is None else _hashable_struct(params)
    try:
        shape = _output_shape(logit_fn, params_key, x_key)
    except TypeError as err:  # unhashable logit_fn: evaluate without the cache
        if "unhashable" not in str(err):
            raise
        shape = _output_shape.__wrapped__(logit_fn, params_key, x_key)
    if shape is None or len(shape) > 1 or (len(shape) == 1 and shape[0] < 2):
        form = "logit_fn(x)" if params is None else "logit_fn(params, x)"
        raise ValueError(
            f"{form} must return a scalar logit (binary) or a vector of K >= 2 class scores for ONE "
            f"example x of shape {x.shape[1:]}; it returned shape {shape}. If it returns a batch "
            "axis of one, index it away, e.g. lambda x: model.apply(v, x[None])[0].")
    return 2 if len(shape) == 0 else int(shape[0])


def check_labels(y, k: int, name: str = "y") -> None:
    if not _concrete(y):
        return
    y_np = np.asarray(y)
    bad = (y_np < 0) | (y_np >= k)
    if bad.any():
        kind = "binary model (scalar logit): labels must be 0 or 1" if k == 2 else \
            f"model with {k} classes: labels must be in [0, {k})"
        raise ValueError(f"{name} out of range for a {kind}; got {y_np[bad][:5].tolist()} "
                         f"at positions {np.flatnonzero(bad)[:5].tolist()}.")


def check_model_and_labels(logit_fn, params, x, y, *, label_name: str = "y") -> int:
    check_logit_fn(logit_fn)
    k = num_classes(logit_fn, params, x)
    check_labels(y, k, label_name)
    return k


def example_keys(key, batch: int):
    """One PRNG key per example: split a single key, or accept ``(B,)`` keys as given.

    Passing per-example keys makes the result of example i independent of how the batch is
    chunked (the Python-loop-equals-batch property the tests check).
    """
    if key is None:
        raise ValueError("this attack draws random numbers: pass key=jax.random.key(seed).")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    single_ndim = 0 if typed else 1
    if not typed and (key.dtype != jnp.uint32 or key.shape[-1:] != (2,)):
        raise ValueError(f"key must be a jax.random.key / PRNGKey or (B,) of them, got {key.dtype} {key.shape}.")
    if key.ndim == single_ndim:
        return jax.random.split(key, batch)
    if key.ndim == single_ndim + 1 and key.shape[0] == batch:
        return key
    raise ValueError(f"key must be one key or one key per example (B = {batch}), got shape {key.shape}.")
