"""Data parallelism over every visible device: a 1-D ``data`` mesh, parameters replicated.

The same code runs on one CPU, one GPU, a multi-GPU host or (after ``jax.distributed.initialize``)
several hosts. Batches are sharded along their leading axis; everything else is replicated. Test on
CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from theory._common import is_int


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: all visible devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over ``data``."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def devices_phrase(n: int | None = None) -> str:
    """``"4 visible devices"``, or ``"4 devices of 2 processes"`` on a multi-process run."""
    n = jax.device_count() if n is None else n
    procs = jax.process_count()
    return f"{n} visible devices" if procs == 1 else f"{n} devices of {procs} processes"


def check_batch_divides(batch: int, mesh: Mesh, what: str = "batch") -> None:
    """Raise a clear error when ``batch`` cannot be split evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch % n:
        raise ValueError(f"{what} size {batch} is not divisible by the {devices_phrase(n)}; "
                         f"choose a multiple of {n} (e.g. --set {what}={max(n, batch // n * n)})")


# ------------------------------------------------------------------ row blocks for evaluation

# Rows per device of one model call on CPU: XLA:CPU's GEMMs slow down on very tall operands.
AUTO_CPU_BLOCK = 2048
# Overrides of the "auto" choices below, for one run or one machine (docs/multi-process.md).
EVAL_BLOCK_ENV, CONV_IMPL_ENV = "SPHERES_EVAL_BLOCK", "SPHERES_CONV_IMPL"


def eval_block(block: int | str | None = "auto") -> int | None:
    """Rows per model call for ``block``: ``"auto"`` is `AUTO_CPU_BLOCK` on CPU and ``None`` (all rows)
    elsewhere, unless ``$SPHERES_EVAL_BLOCK`` says ``none`` or a number; an int >= 1; or ``None``."""
    if isinstance(block, str) and block == "auto":
        chosen = os.environ.get(EVAL_BLOCK_ENV, "auto").strip().lower()
        if chosen == "auto":
            return AUTO_CPU_BLOCK if jax.default_backend() == "cpu" else None
        if chosen == "none":
            return None
        if not chosen.isdigit() or int(chosen) < 1:
            raise ValueError(f"${EVAL_BLOCK_ENV}={chosen!r}: expected auto, none or a positive number "
                             f"of rows")
        return int(chosen)
    return _positive_int_or_none(block, "block", " or 'auto'")


def conv_impl(impl: str = "auto") -> str:
    """The convolution of the image models for ``impl``: ``"auto"`` is ``"im2col"`` (matmuls, fast
    inside a training ``scan`` on XLA:CPU) on CPU and ``"xla"`` (``nn.Conv``: cuDNN and the TPU's
    tuned convolutions) elsewhere, unless ``$SPHERES_CONV_IMPL`` names one; ``"im2col"`` and
    ``"xla"`` are themselves. Both compute the same function with the same parameters."""
    if impl == "auto":
        impl = os.environ.get(CONV_IMPL_ENV, "auto").strip().lower()
        if impl == "auto":
            return "im2col" if jax.default_backend() == "cpu" else "xla"
    if impl not in ("im2col", "xla"):
        raise ValueError(f"conv_impl must be 'auto', 'im2col' or 'xla' (got {impl!r}; "
                         f"${CONV_IMPL_ENV} sets what 'auto' means)")
    return impl


def _positive_int_or_none(value, name: str, alternatives: str = ""):
    if value is None:
        return None
    if not is_int(value):
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


# ------------------------------------------------------------------ rows split over processes

def host_local(tree):
    """``tree`` with every array as a host NumPy array: what a computation that each process runs
    on its own devices takes (a replicated global array would make it a program of every process)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))


def across_processes(f: Callable, x) -> object:
    """``f(x)`` with the rows of ``x (n, ...)`` split over the processes of a multi-process run.

    Process ``p`` computes ``f`` on its contiguous block of ``ceil(n / P)`` rows (the last block
    padded by repeating the last row) on its own devices; every process gets all ``n`` rows of the
    result (``multihost_utils.process_allgather``), as NumPy arrays. ``f`` must treat rows
    independently, return a pytree of arrays with leading axis of its input's length, and close
    only over host-local values (`host_local`). On one process this is exactly ``f(x)``.
    """
    P = jax.process_count()
    if P == 1:
        return f(x)
    from jax.experimental import multihost_utils

    xh = np.asarray(x)
    n = xh.shape[0]
    per = -(-n // P)
    if per * P > n:
        xh = np.concatenate([xh, np.repeat(xh[-1:], per * P - n, axis=0)])
    me = jax.process_index()
    out = host_local(f(jnp.asarray(xh[me * per:(me + 1) * per])))
    return jax.tree.map(lambda a: np.asarray(a)[:n], multihost_utils.process_allgather(out, tiled=True))
