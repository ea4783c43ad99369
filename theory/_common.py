"""Small helpers shared by the theory modules: input validation and precision warnings."""

from __future__ import annotations

import warnings

import jax
import numpy as np

SPHERES = ("inner", "outer")


class PrecisionWarning(UserWarning):
    """A theory function was called in a precision (float32) where its result may be inaccurate."""


def is_concrete(*xs) -> bool:
    """True when none of ``xs`` is a JAX tracer (so Python-side validation can look at values)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def warn_if_float32(name: str, why: str) -> None:
    """Warn (once per call site) when JAX runs without 64-bit types, where ``why`` matters."""
    if not jax.config.jax_enable_x64:
        warnings.warn(
            f"theory.{name} is running with jax_enable_x64=False (float32): {why}. "
            "Enable float64 with jax.config.update('jax_enable_x64', True).",
            PrecisionWarning, stacklevel=3)


def check_sphere(sphere: str) -> str:
    if sphere not in SPHERES:
        raise ValueError(f"sphere must be 'inner' or 'outer', got {sphere!r}")
    return sphere


def check_radius(R) -> float:
    if not is_concrete(R):
        return R
    R_arr = np.asarray(R, dtype=np.float64)
    if R_arr.ndim != 0 or not np.isfinite(R_arr) or not R_arr > 1:
        raise ValueError(f"outer radius R must be a finite scalar > 1, got {R!r}")
    return float(R_arr)


def as_float64_array(x, name: str, *, min_ndim: int = 0) -> np.ndarray:
    """``x`` as a finite float64 NumPy array with at least ``min_ndim`` dimensions (host-side code)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    return arr
