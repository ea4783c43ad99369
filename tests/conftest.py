"""Shared fixtures; the test run compiles without JAX's persistent cache (see pytest_configure)."""

import os

import jax
import pytest


def pytest_configure(config):
    """No persistent XLA compilation cache in the test suite, unless the caller asks for one.

    Writing an executable to JAX's persistent cache serialises it, and on CI (jax 0.10.2, XLA:CPU)
    ``executable.serialize()`` once killed an xdist worker with a segmentation fault; the cache also
    only pays off on a second run, which a fresh clone never has. So the suite compiles afresh,
    and so do the ``spheres`` subprocesses it starts (``SPHERES_COMPILE_CACHE=off``). A developer who
    wants the cache for repeated local runs sets ``JAX_COMPILATION_CACHE_DIR`` (JAX reads it, and
    subprocesses inherit it).
    """
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        os.environ["SPHERES_COMPILE_CACHE"] = "off"


@pytest.fixture(scope="module")
def float64():
    """Float64 for a whole test module (closed forms are compared in double precision); restores
    the previous setting afterwards. Use with ``pytestmark = pytest.mark.usefixtures("float64")``."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)
