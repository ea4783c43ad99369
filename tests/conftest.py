"""Shared fixtures."""

import jax
import pytest


@pytest.fixture(scope="module")
def float64():
    """Float64 for a whole test module (closed forms are compared in double precision); restores
    the previous setting afterwards. Use with ``pytestmark = pytest.mark.usefixtures("float64")``."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


# --------------------------------------------------------------------------- image experiments


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A module-scoped MonkeyPatch with $SPHERES_DATA unset: the Debian files are used whatever the
    caller's environment says."""
    from spheres import image_data as idata

    mp = pytest.MonkeyPatch()
    mp.delenv(idata.ENV_VAR, raising=False)
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def run(tmp_path_factory, monkeypatch_module):
    """``run(name) -> (summary, run directory)`` for an image experiment's quick preset; each
    experiment runs once per module and several tests read its summary and arrays."""
    from spheres.experiments import make_config, run_experiment

    done = {}

    def _run(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            done[name] = (run_experiment(name, make_config(name, "quick"), out), out)
        return done[name]

    return _run
