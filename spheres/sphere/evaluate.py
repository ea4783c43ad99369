"""Streaming error rates per sphere with exact (Clopper–Pearson) confidence bounds.

Gilmer et al. evaluate on 10^7 points per sphere. ``sphere_error_rate`` draws the points in
fixed-size chunks inside one jitted ``lax.fori_loop`` per "block" of chunks, so memory is flat in
``n`` and the host is consulted once per block. Chunk ``i`` uses ``fold_in(key, i)``: the result does
not depend on how chunks are grouped into blocks or on the number of devices.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory.binomial import clopper_pearson

from . import data as sdata
from ..sharding import batch_sharding, check_batch_divides, data_mesh


class NonFiniteOutputError(ValueError):
    """A model produced non-finite outputs (NaN or ±inf) in an evaluation; the message says how
    many of how many."""


def nonfinite_message(what: str, bad: int, n: int) -> str:
    return (f"{what}: {bad:,} of {n:,} model outputs are not finite (NaN or inf); the model has "
            f"diverged. Retrain with a smaller lr, or evaluate with nonfinite=count to count them "
            f"as errors")


class ErrorRate(NamedTuple):
    """``errors`` out of ``n``; ``rate = errors / n``; ``[lower, upper]`` the exact two-sided
    Clopper–Pearson interval at ``confidence`` (with 0 errors, ``upper = 1 − ((1−c)/2)^(1/n)``)."""

    errors: int
    n: int
    rate: float
    lower: float
    upper: float
    confidence: float

    def as_dict(self) -> dict:
        return self._asdict()


@functools.lru_cache(maxsize=64)
def make_error_counter(batch_logits: Callable, d: int, radius: float, label: int, chunk: int,
                       chunks_per_block: int, mesh=None) -> Callable:
    """A jitted ``count(variables, key, first_chunk, n) -> errors`` over one block of chunks.

    ``batch_logits(variables, x (chunk, d)) -> (chunk,)``. Points with global index ``>= n`` are
    masked out (the last chunk may be partial). Cached on its arguments (all hashable), so repeated
    evaluations of the same ``batch_logits`` compile once; pass a module-level or cached function,
    not a fresh lambda, to benefit.
    """
    check_batch_divides(chunk, mesh, "eval_chunk")
    sharding = batch_sharding(mesh)

    @jax.jit
    def count(variables, key, first_chunk, n):
        # index < n without forming c * chunk: the last block's padding chunks would reach
        # n + chunks_per_block * chunk, which wraps around int32 for n near 2**31
        full, rem = n // chunk, n % chunk

        def body(i, acc):
            c = first_chunk + i
            x = sdata.sample_sphere(jax.random.fold_in(key, c), chunk, d, radius)
            x = jax.lax.with_sharding_constraint(x, sharding)
            logits = batch_logits(variables, x)
            wrong = (logits > 0) != (label == 1)
            valid = (c < full) | ((c == full) & (jnp.arange(chunk) < rem))
            return acc + jnp.sum(wrong & valid, dtype=jnp.int32)

        return jax.lax.fori_loop(0, chunks_per_block, body, jnp.zeros((), jnp.int32))

    return count


@functools.lru_cache(maxsize=64)
def make_outcome_counter(batch_logits: Callable, d: int, radius: float, label: int, chunk: int,
                         chunks_per_block: int, mesh=None) -> Callable:
    """A jitted ``count(variables, key, first_chunk, full, rem) -> (errors, nonfinite)`` over one
    block of chunks: ``full = n // chunk`` and ``rem = n % chunk`` come from the host, so ``n``
    itself may exceed int32. A non-finite logit is counted in ``nonfinite`` and not in ``errors``.
    Counts per block fit int32 (``chunks_per_block · chunk < 2**31``); the host sums them exactly.
    """
    check_batch_divides(chunk, mesh, "eval_chunk")
    sharding = batch_sharding(mesh)

    @jax.jit
    def count(variables, key, first_chunk, full, rem):
        def body(i, acc):
            c = first_chunk + i
            x = sdata.sample_sphere(jax.random.fold_in(key, c), chunk, d, radius)
            x = jax.lax.with_sharding_constraint(x, sharding)
            logits = batch_logits(variables, x)
            finite = jnp.isfinite(logits)
            wrong = ((logits > 0) != (label == 1)) & finite
            valid = (c < full) | ((c == full) & (jnp.arange(chunk) < rem))
            return (acc[0] + jnp.sum(wrong & valid, dtype=jnp.int32),
                    acc[1] + jnp.sum(~finite & valid, dtype=jnp.int32))

        zero = jnp.zeros((), jnp.int32)
        return jax.lax.fori_loop(0, chunks_per_block, body, (zero, zero))

    return count


def _device_chunk(chunk: int, n: int, mesh) -> int:
    """The chunk actually used: at most ``n``, rounded up to a multiple of the device count."""
    ndev = mesh.devices.size
    return -(-min(chunk, n) // ndev) * ndev


def sphere_error_rate(batch_logits: Callable, variables, *, key: jax.Array, d: int, radius: float,
                      label: int, n: int, chunk: int = 10_000, chunks_per_block: int = 10,
                      confidence: float = 0.95, mesh=None, progress: bool = True,
                      desc: str | None = None, nonfinite: str = "error") -> ErrorRate:
    """Error rate of a classifier on ``n`` uniform points of the sphere of radius ``radius``.

    A point counts as an error when ``(logit > 0) != (label == 1)``. Returns ``ErrorRate`` with the
    exact Clopper–Pearson interval, so "0 errors in 10^7" reports ``upper ≈ 3.7e-7`` at 95%.
    Memory is ``O(chunk · d)`` whatever ``n``; ``n`` may exceed int32 (the host sums per-block
    counts), up to ``2**31`` chunks.

    Non-finite logits (NaN, ±inf) are never read as a class: with ``nonfinite="error"`` (default)
    any of them raises `NonFiniteOutputError` saying how many of ``n``; with ``"count"`` they
    count as errors.
    """
    from tqdm.auto import tqdm

    if nonfinite not in ("error", "count"):
        raise ValueError(f"nonfinite must be 'error' or 'count', got {nonfinite!r}")
    if n <= 0:
        raise ValueError(f"number of evaluation samples must be positive, got {n}")
    mesh = data_mesh() if mesh is None else mesh
    chunk = _device_chunk(chunk, n, mesh)
    chunks_per_block = max(1, min(chunks_per_block, (2**31 - 1) // chunk))
    num_chunks = math.ceil(n / chunk)
    if num_chunks >= 2**31:
        raise ValueError(f"n = {n} is {num_chunks} chunks of {chunk}; more than 2**31: raise the chunk")
    count = make_outcome_counter(batch_logits, d, float(radius), int(label), chunk, chunks_per_block, mesh)
    full, rem = jnp.asarray(n // chunk, jnp.int32), jnp.asarray(n % chunk, jnp.int32)
    errors = bad = 0
    with tqdm(total=n, desc=desc or f"eval r={radius:g}", disable=not progress, unit="pt",
              unit_scale=True, mininterval=1.0) as bar:
        pending = None
        for first in range(0, num_chunks, chunks_per_block):
            out = count(variables, key, jnp.asarray(first, jnp.int32), full, rem)
            if pending is not None:
                errors += int(pending[0][0])
                bad += int(pending[0][1])
                bar.update(pending[1])
            pending = (out, min(n, (first + chunks_per_block) * chunk) - first * chunk)
        errors += int(pending[0][0])
        bad += int(pending[0][1])
        bar.update(pending[1])
    if bad and nonfinite == "error":
        raise NonFiniteOutputError(nonfinite_message(desc or f"evaluation on the sphere r={radius:g}", bad, n))
    errors += bad
    lower, upper = clopper_pearson(errors, n, confidence)
    return ErrorRate(errors, n, errors / n, lower, upper, confidence)


@functools.lru_cache(maxsize=64)
def _chunk_logits(batch_logits: Callable, d: int, radius: float, chunk: int, mesh) -> Callable:
    sharding = batch_sharding(mesh)

    @jax.jit
    def logits(variables, key, c):
        x = sdata.sample_sphere(jax.random.fold_in(key, c), chunk, d, radius)
        return batch_logits(variables, jax.lax.with_sharding_constraint(x, sharding))

    return logits


def sphere_logits(batch_logits: Callable, variables, *, key: jax.Array, d: int, radius: float, n: int,
                  chunk: int = 10_000, mesh=None) -> np.ndarray:
    """The logits ``(n,)`` (host float array) of the very points `sphere_error_rate` counts with the
    same ``key``, ``n`` and ``chunk``: chunk ``c`` is ``sample_sphere(fold_in(key, c), chunk, d,
    radius)``, the chunk rounded up to a multiple of the device count. Memory is ``O(n)`` on the
    host: for analyses of the logits themselves (`best_offset`), not for counting."""
    if n <= 0:
        raise ValueError(f"number of evaluation samples must be positive, got {n}")
    mesh = data_mesh() if mesh is None else mesh
    chunk = _device_chunk(chunk, n, mesh)
    f = _chunk_logits(batch_logits, d, float(radius), chunk, mesh)
    out = [np.asarray(f(variables, key, jnp.asarray(c, jnp.int32))) for c in range(math.ceil(n / chunk))]
    return np.concatenate(out)[:n]


def best_offset(inner_logits, outer_logits) -> dict:
    """The output offset ``t`` that minimises the errors of the shifted classifier ``logit − t > 0``
    (outer sphere, label 1) on the given points, found exactly: the error count
    ``#(inner > t) + #(outer ≤ t)`` changes only at the logits' own values, so every one of them
    (and −∞) is tried. Ties go to the ``t`` nearest 0. Returns ``{"offset", "inner", "outer",
    "total"}`` (error counts at ``t``) and ``{"inner_at_0", "outer_at_0"}`` for comparison.

    If even the best ``t`` leaves many errors, the two spheres' logits overlap and no recalibration
    of the output (a bias, a BatchNorm shift) can remove them."""
    a = np.sort(np.asarray(inner_logits, np.float64).ravel())
    b = np.sort(np.asarray(outer_logits, np.float64).ravel())
    if a.size == 0 or b.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("best_offset needs non-empty, finite logits on both spheres")
    t = np.concatenate([[-np.inf], a, b])
    inner = a.size - np.searchsorted(a, t, side="right")
    outer = np.searchsorted(b, t, side="right")
    total = inner + outer
    best = np.flatnonzero(total == total.min())
    i = best[np.argmin(np.abs(t[best]))]
    return {"offset": float(t[i]), "inner": int(inner[i]), "outer": int(outer[i]), "total": int(total[i]),
            "inner_at_0": int(np.sum(a > 0)), "outer_at_0": int(np.sum(b <= 0))}


def two_sphere_error_rates(batch_logits: Callable, variables, *, key: jax.Array, d: int, R: float,
                           n: int, chunk: int = 10_000, confidence: float = 0.95, mesh=None,
                           progress: bool = True, nonfinite: str = "error") -> dict[str, ErrorRate]:
    """``{"inner": ErrorRate, "outer": ErrorRate}``: ``n`` points on each sphere, independent keys
    (``nonfinite`` as in `sphere_error_rate`)."""
    k_in, k_out = jax.random.split(key)
    kw = dict(d=d, n=n, chunk=chunk, confidence=confidence, mesh=mesh, progress=progress,
              nonfinite=nonfinite)
    return {"inner": sphere_error_rate(batch_logits, variables, key=k_in, radius=1.0, label=0,
                                       desc="eval inner", **kw),
            "outer": sphere_error_rate(batch_logits, variables, key=k_out, radius=R, label=1,
                                       desc="eval outer", **kw)}
