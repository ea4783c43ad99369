"""The suite's guard against running out of memory mappings (tests/conftest.py)."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

_spec = importlib.util.spec_from_file_location("suite_conftest", Path(__file__).parents[1] / "conftest.py")
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)


@pytest.mark.skipif(suite.memory_map_count() is None, reason="no /proc/self/maps on this system")
def test_clearing_releases_the_mappings_of_compiled_executables():
    x = jnp.ones((32, 32))
    suite.relieve_map_pressure(fraction=0.0)
    base = suite.memory_map_count()
    fns = [jax.jit(lambda x, i=i: jnp.tanh(x @ x.T + i).sum(0)) for i in range(40)]  # kept alive,
    keep = [f(x) for f in fns]                    # as module-level functions are in the suite
    grown = suite.memory_map_count()
    assert grown > base + 40                      # each executable holds mappings (about 14 here)
    assert not suite.relieve_map_pressure(fraction=1e9)    # under the threshold: left alone
    assert suite.memory_map_count() >= grown - 5
    assert suite.relieve_map_pressure(fraction=0.0)        # over it: executables are dropped
    assert suite.memory_map_count() < grown - 20
    assert float(keep[3][0]) == pytest.approx(32 * float(jnp.tanh(32.0 + 3)))   # results stay


def test_limit_is_read_or_defaulted():
    assert suite.max_map_count() >= 1000
