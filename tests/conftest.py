"""Shared fixtures; the test run compiles without JAX's persistent cache (see pytest_configure) and
starts every test file with JAX's caches empty (see pytest_runtest_teardown)."""

import gc
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


def memory_map_count() -> int | None:
    """Lines of /proc/self/maps (this process's memory mappings), or None where there is none."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def max_map_count() -> int:
    """The kernel's per-process limit on memory mappings (Linux default 65530)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65530


def relieve_map_pressure(fraction: float = 0.4) -> bool:
    """Drop JAX's compiled executables once mappings pass ``fraction`` of the kernel's limit.

    Every XLA:CPU executable holds about a dozen memory mappings for as long as JAX's caches keep it;
    ``jax.clear_caches()`` gives them back. A backstop inside one test file (see
    ``pytest_runtest_teardown``). Returns whether it cleared.
    """
    n = memory_map_count()
    if n is None or n < fraction * max_map_count():
        return False
    jax.clear_caches()
    gc.collect()
    return True


def pytest_runtest_teardown(item, nextitem):
    """Each xdist worker starts every test file with JAX's caches empty.

    A worker that has compiled over a thousand programs can die with a segmentation fault inside
    XLA:CPU's compiler (``backend_compile_and_load``) at a test that passes in a fresh process; which
    of the accumulated state XLA trips over is not identified (docs/design.md, "Compilation cache").
    So no worker keeps more than one file's executables; later files only recompile what they use.
    """
    if nextitem is None or nextitem.path != item.path:
        jax.clear_caches()
        gc.collect()
    else:
        relieve_map_pressure()
