"""Shared fixtures, and a persistent XLA compilation cache for the whole test run."""

import os

import jax
import pytest


def pytest_configure(config):
    """Share compiled XLA executables between tests, xdist workers and notebook kernels.

    Many tests compile the same computation (the same model and attack shapes in several quick
    presets, a notebook and a unit test); XLA:CPU compiles an L-BFGS attack in ~15 s, and with the
    cache a repeat costs a file read (szegedy-table1 quick: 126 s cold, 32 s warm). The cache lives
    in pytest's cache directory (``.pytest_cache/d/jax-compile``), so it also survives between local
    runs; a fresh clone starts cold. Keys include the HLO, jax/jaxlib versions, flags and device, so
    a hit is the same executable. ``JAX_COMPILATION_CACHE_DIR`` set by the caller wins.
    """
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        cache = getattr(config, "cache", None)
        if cache is None:              # -p no:cacheprovider
            return
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache.mkdir("jax-compile"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")   # for subprocesses
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


@pytest.fixture(scope="module")
def float64():
    """Float64 for a whole test module (closed forms are compared in double precision); restores
    the previous setting afterwards. Use with ``pytestmark = pytest.mark.usefixtures("float64")``."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)
