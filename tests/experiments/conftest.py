"""Fixtures of the experiment tests: each image experiment's quick run, once per test module."""

import json

import pytest


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A module-scoped MonkeyPatch with $SPHERES_DATA unset: the data the presets name are used
    whatever the caller's environment says."""
    from spheres.images import data as idata

    mp = pytest.MonkeyPatch()
    mp.delenv(idata.ENV_VAR, raising=False)
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def run(tmp_path_factory, monkeypatch_module):
    """``run(name) -> (summary, run directory)`` for an experiment's quick preset; each experiment
    runs once per module and several tests read its summary and arrays."""
    from spheres.experiments import run_experiment

    done = {}

    def _run(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            done[name] = (run_experiment(name, out, preset="quick", progress=False), out)
        return done[name]

    return _run


@pytest.fixture(scope="module")
def check_quick_run(run):
    """``check_quick_run(name)``: the image experiment's quick summary names its dataset and preset
    and is on disk; its `Tables` carry the provenance and the MNIST note; its paper rows pair paper
    values with ours (the same checks for both papers' experiments)."""
    from spheres.experiments import get
    from spheres.paper import PaperRow
    from spheres.tables import Tables

    def _check(name):
        summary, out = run(name)
        assert summary["dataset"] == "fashion_mnist" and summary["paper_numbers_are_for_mnist"]
        assert summary["preset"] == "quick"
        on_disk = json.loads((out / "summary.json").read_text())
        assert on_disk["experiment"] == name
        assert json.loads((out / "manifest.json").read_text())["preset"] == "quick"
        exp = get(name)
        table = exp.table(on_disk)
        assert isinstance(table, Tables) and table.title.startswith(name)
        assert "NOTE: the paper numbers are for MNIST; ours are for fashion_mnist." in table.notes
        assert table.provenance.startswith("dataset: fashion_mnist [") and "(train " in table.provenance
        assert "preset: quick" in table.provenance and "seed 0" in table.provenance
        assert table.text() and table.markdown()
        rows = exp.paper_rows(on_disk)
        assert rows and all(isinstance(r, PaperRow) and r.value.paper == exp.paper for r in rows)
        assert all(r.ours and r.ours != "-" for r in rows), [r.cells() for r in rows]

    return _check
