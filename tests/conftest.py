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


@pytest.fixture(scope="module")
def check_quick_run(run):
    """``check_quick_run(name)``: the image experiment's quick summary names its dataset and preset,
    is on disk, and its table carries the MNIST note (the same checks for both papers' modules)."""
    import json

    from spheres.experiments import get

    def _check(name):
        summary, out = run(name)
        assert summary["dataset"] == "fashion_mnist" and summary["paper_numbers_are_for_mnist"]
        assert summary["preset"] == "quick"
        on_disk = json.loads((out / "summary.json").read_text())
        assert on_disk["experiment"] == name
        table = get(name).table(on_disk)
        assert "NOTE: the paper numbers are for MNIST; ours are for fashion_mnist." in table
        assert "preset: quick" in table

    return _check
