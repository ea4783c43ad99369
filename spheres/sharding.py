"""Data parallelism over every visible device: a 1-D ``data`` mesh, parameters replicated.

The same code runs on one CPU, one GPU, a multi-GPU host or (after ``jax.distributed.initialize``)
several hosts. Batches are sharded along their leading axis; everything else is replicated. Test on
CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: all visible devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over ``data``."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divides(batch: int, mesh: Mesh, what: str = "batch") -> None:
    """Raise a clear error when ``batch`` cannot be split evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch % n:
        raise ValueError(f"{what} size {batch} is not divisible by the {n} visible devices; "
                         f"choose a multiple of {n} (e.g. --set {what}={max(n, batch // n * n)})")
