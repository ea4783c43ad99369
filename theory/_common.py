"""Small helpers shared by the theory modules: input validation and precision warnings."""

from __future__ import annotations

import numbers
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


def is_int(value, minimum: int = 1) -> bool:
    """``value`` is an integer (Python or NumPy, not a bool) ``>= minimum``: the one test behind
    every count, size and step option checked at a public boundary."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            and bool(value >= minimum))


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


def check_alpha(alpha, name: str = "alpha"):
    """Validate ellipsoid coefficients outside jit: finite, at least 1-D, non-empty last axis
    (``(..., d)``, ``d >= 1``). Returns ``alpha`` unchanged (tracers pass through)."""
    if not is_concrete(alpha):
        return alpha
    arr = np.asarray(alpha)
    if arr.ndim < 1 or arr.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., d) with d >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.sum(np.isfinite(arr))) if np.issubdtype(arr.dtype, np.number) else "all"
        raise ValueError(f"{name} must be finite: {bad} of {arr.size} entries are NaN or inf "
                         f"(a diverged model?)")
    return alpha


def check_unit_interval(x, name: str, *, closed: bool = True):
    """Validate a probability outside jit: finite and in [0, 1] (``closed``) or (0, 1)."""
    if not is_concrete(x):
        return x
    arr = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(arr) & ((arr >= 0) & (arr <= 1) if closed else (arr > 0) & (arr < 1))
    if not np.all(ok):
        raise ValueError(f"{name} must lie in {'[0, 1]' if closed else '(0, 1)'}, got {x!r}")
    return x


def check_positive_dimension(d, name: str = "d"):
    """Validate a dimension outside jit: finite and >= 1."""
    if not is_concrete(d):
        return d
    arr = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(arr) & (arr >= 1)):
        raise ValueError(f"{name} must be >= 1, got {d!r}")
    return d
