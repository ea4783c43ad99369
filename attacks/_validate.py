"""Input checks at the public boundary, run BEFORE anything is traced or compiled.

Each check raises ``ValueError`` (``TypeError`` for wrong kinds) saying what was wrong and how
to fix it.  Value checks (finite, in bounds, label range) need concrete arrays; when an attack
is itself called inside a user's ``jit`` they are skipped and only the shape checks run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attacks import _model
from attacks._base import LOSSES, predict_batch
from attacks._model import Resolved
from theory._common import is_int


def _concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arrays))


def check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(choices)}.")


def check_loss(loss: str, losses=LOSSES) -> None:
    check_choice(loss, "loss", losses)


def _host(a) -> np.ndarray:
    """A NumPy view of a concrete array for the value checks: no device program is compiled for
    a check (each eager ``jnp`` reduction would compile one on its first use)."""
    return np.asarray(a)


def check_inputs(x):
    """``x (B, *input_shape)``, floating, finite.  Returns a jnp array."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"x must have a batch axis: shape (B, *input_shape), got {x.shape}. "
            "For a single example pass x[None] and y[None].")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be floating point, got dtype {x.dtype}; cast it, e.g. x.astype(jnp.float32).")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0).")
    if _concrete(x):
        finite = np.isfinite(_host(x).reshape(x.shape[0], -1))
        if not finite.all():
            bad = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(
                f"x contains NaN or inf in examples {bad[:10].tolist()}{'...' if bad.size > 10 else ''}; "
                "attacks need finite inputs.")
    return x


def check_label_shape(y, batch: int, x_shape, *, label_name: str = "y"):
    """``y (B,)`` integer labels (bool accepted).  Returns an int32 array (NumPy if concrete)."""
    if not isinstance(y, jax.core.Tracer):
        y = np.asarray(y)
        if y.dtype == np.bool_:
            y = y.astype(np.int32)
    if tuple(np.shape(y)) != (batch,):
        raise ValueError(f"{label_name} must have shape (B,) = ({batch},) to match x {tuple(x_shape)}, "
                         f"got {tuple(np.shape(y))}.")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{label_name} must hold integer class labels, got dtype {y.dtype}.")
    if y.dtype != np.int32:
        y = y.astype(np.int32) if isinstance(y, np.ndarray) else y.astype(jnp.int32)
    return y


def check_batch(x, y, *, label_name: str = "y"):
    """``x (B, *input_shape)`` floating, finite; ``y (B,)`` integer, or ``None`` (labels to be
    taken from the model's predictions).  Returns ``(x, y)``."""
    x = jnp.asarray(x) if not isinstance(x, jax.core.Tracer) else x
    if x.ndim < 2:
        raise ValueError(
            f"x must have a batch axis: shape (B, *input_shape), got {x.shape}. "
            "For a single example pass x[None] and y[None].")
    if y is not None:                      # shape errors before value errors
        y = check_label_shape(y, x.shape[0], x.shape, label_name=label_name)
    return check_inputs(x), y


def check_nonnegative(value, name: str, batch: int, dtype, *, positive: bool = False):
    """A scalar or per-example ``(B,)`` non-negative (or positive) finite number -> ``(B,)`` array
    (NumPy when concrete: no device program is compiled for it)."""
    if isinstance(value, jax.core.Tracer):
        arr = jnp.asarray(value, dtype=dtype)
        if arr.ndim == 0:
            arr = jnp.broadcast_to(arr, (batch,))
    else:
        arr = np.asarray(value, dtype=dtype)
        if arr.ndim == 0:
            arr = np.broadcast_to(arr, (batch,))
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


def check_epsilons(epsilons, dtype) -> np.ndarray:
    """A non-empty 1-D sequence of finite ε >= 0 -> ``(E,)`` NumPy array."""
    try:
        arr = np.asarray(epsilons, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"epsilons must be a sequence of numbers, got {epsilons!r}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"epsilons must be a non-empty 1-D sequence of budgets, got shape {arr.shape}; "
                         "for one budget (scalar or per-example (B,)) use eps=.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"epsilons must be finite and >= 0, got {arr.tolist()}.")
    return arr


def check_eps_or_epsilons(eps, epsilons, batch: int, dtype):
    """Exactly one of ``eps`` (scalar or ``(B,)``) and ``epsilons`` (a list of budgets).
    Returns ``(eps (B,) or None, epsilons (E,) or None)``."""
    if (eps is None) == (epsilons is None):
        raise ValueError("pass exactly one of eps= (one budget, scalar or per-example (B,)) and "
                         "epsilons= (a sequence of budgets, one result per budget).")
    if epsilons is not None:
        return None, check_epsilons(epsilons, dtype)
    return check_nonnegative(eps, "eps", batch, dtype), None


def check_int(value, name: str, *, minimum: int) -> int:
    if not is_int(value, minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_tolerance(value, name: str, *, upper: float | None = None) -> float:
    """A finite float ``>= 0`` (and ``< upper`` if given): a stopping tolerance or a line-search factor."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}.") from None
    if isinstance(value, bool) or not np.isfinite(v) or v < 0 or (upper is not None and not v < upper):
        rng = f"in [0, {upper})" if upper is not None else ">= 0 and finite"
        raise ValueError(f"{name} must be {rng}, got {value!r}.")
    return v


def check_bounds(bounds, x):
    """``None`` or ``(lo, hi)`` broadcastable to ``x``, ``lo <= hi``, and ``x`` inside.

    Returns ``(lo, hi)`` broadcast to ``x.shape`` (so they vmap with the batch) or ``None``.
    """
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be None or a pair (lo, hi), got {bounds!r}.")
    traced = not _concrete(x, bounds)
    xp = jnp if traced else np
    try:
        lo = xp.broadcast_to(xp.asarray(bounds[0], x.dtype), x.shape)
        hi = xp.broadcast_to(xp.asarray(bounds[1], x.dtype), x.shape)
    except ValueError as err:
        raise ValueError(
            f"bounds must broadcast to x's shape {x.shape} (scalars, input_shape, or (B, *input_shape)): "
            f"{err}") from None
    if not traced:
        xh = _host(x)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError("bounds contain NaN.")
        if np.any(lo > hi):
            raise ValueError("bounds have lo > hi somewhere; pass (lo, hi) with lo <= hi.")
        below = float(np.max(lo - xh))
        above = float(np.max(xh - hi))
        if below > 0 or above > 0:
            raise ValueError(
                f"bounds exclude x: x is below lo by up to {max(below, 0.0):.3g} and above hi by up to "
                f"{max(above, 0.0):.3g}. Clip x into the box first, widen bounds, or pass bounds=None "
                "(e.g. sphere data has no box).")
    return lo, hi


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


def check_model_and_labels(model: Resolved, x, y, *, targeted: bool = False,
                           label_name: str = "y", min_classes: int = 2):
    """The model's output shape (``jax.eval_shape``, nothing compiled) and the labels.

    ``y=None``: untargeted attacks take the model's predicted labels (argmax, or ``logit > 0``
    for a binary model), computed with one jitted call; targeted attacks need their targets.
    ``min_classes=3``: the DLR loss (refuses binary and 2-class models).
    Returns ``(k, y)`` with k = 2 for a scalar logit, else the number of classes.
    """
    k = _model.num_classes(model, x)
    if k < min_classes:
        raise ValueError(
            f"loss='dlr' needs K >= 3 classes (it divides by z_π1 − z_π3, Croce & Hein 2020 eq. 6); "
            "this model has 2 (a scalar logit or K = 2). Use loss='ce' or loss='margin'.")
    if y is None:
        if targeted:
            raise ValueError("a targeted attack needs its target labels; y=None (attack the model's "
                             "predictions) is for untargeted attacks.")
        return k, predict_batch(model.fn, model.params, x)
    check_labels(y, k, label_name)
    return k, y


def check_key(key, batch: int):
    """A PRNG key for a batch: ``(per_example_keys, None)`` for ``(B,)`` keys given as such, or
    ``(None, key)`` for one key, which the compiled attack splits into ``jax.random.split(key, B)``
    (inside the program: no separate compilation for the split).

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
        return None, key
    if key.ndim == single_ndim + 1 and key.shape[0] == batch:
        return key, None
    raise ValueError(f"key must be one key or one key per example (B = {batch}), got shape {key.shape}.")
