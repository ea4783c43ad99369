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


# Test files by their measured time (a 2-worker run, 2026-12-02: 1,686 worker-seconds), longest
# first. `make test` runs `--dist loadfile --no-loadscope-reorder`, so xdist hands the files out in
# this order: the long files start first and the short ones fill the end (longest processing time
# first; simulated 917 s -> 846 s of wall time against xdist's default order by number of tests).
# Files not listed come last, in collection order. Only the order changes, never what runs.
LONGEST_FIRST = (
    "test_image_szegedy.py", "test_notebooks.py", "test_benchmarks.py", "test_image_models.py",
    "test_attacks_closed_form.py", "test_attacks_harness.py", "test_image_goodfellow.py",
    "test_exp_geometry.py", "test_exp_quadratic.py", "test_cli.py", "test_train.py",
    "test_sharding.py", "test_image_train.py", "test_models.py", "test_attacks_lbfgsb.py",
    "test_exp_relu.py", "test_theory_error_rate.py", "test_theory_lipschitz.py",
    "test_attacks_underflow.py", "test_theory_bounds.py", "test_data.py", "test_theory_quadratic.py",
    "test_theory_linear.py", "test_evaluate.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: in-file order kept


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
