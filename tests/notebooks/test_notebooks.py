"""The notebooks run top to bottom at their small size, and each .ipynb is its .py without outputs.

Each notebook is built from its jupytext `.py` (the source of truth), its `parameters` cell is
followed by an injected cell (``SIZE = "small"``, ``OUT_DIR = <tmp>``), and it is executed by
nbclient in a ``python3`` kernel that runs *this* interpreter (a kernelspec written to a temporary
directory that ``JUPYTER_PATH`` puts first). Every notebook's last cell writes ``summary.json``;
each test then checks numbers in it, with the tolerance stated next to the check.

Notebooks 04 and 05 need Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package and are
skipped (with that reason) when it is not installed.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel", reason="ipykernel is needed to execute the notebooks")

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = ("01_spheres_tour", "02_quadratic_ellipsoid", "03_error_vs_distance",
             "04_szegedy_lbfgs", "05_goodfellow_fgsm")
CELL_TIMEOUT = 600  # seconds per cell; the small sizes take well under a minute per notebook


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A ``python3`` kernelspec running ``sys.executable`` (this venv), first on ``JUPYTER_PATH``."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (test venv)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", os.pathsep.join([str(root)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]))
        mp.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
        mp.setenv("PYTHONWARNINGS", "ignore::DeprecationWarning")
        yield root


def parameter_cell_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def run_notebook(name: str, out_dir: Path, **params) -> dict:
    """Execute notebook ``name`` with ``params`` injected after its parameter cell; return its summary."""
    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    assignments = {"SIZE": "small", "OUT_DIR": str(out_dir), **params}
    source = "\n".join(f"{k} = {v!r}" for k, v in assignments.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(parameter_cell_index(nb) + 1, injected)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    client.execute()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(f"{name}: executed in {time.time() - t0:.1f} s wall, {cpu:.1f} s kernel CPU")
    summary = out_dir / "summary.json"
    assert summary.exists(), f"{name} did not write {summary}"
    return json.loads(summary.read_text())


# ------------------------------------------------------------------------------------------ pairing


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_is_paired_and_has_no_outputs(name):
    py = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    ipynb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    cells = lambda nb: [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", [])))
                        for c in nb.cells]
    assert cells(ipynb) == cells(py), (f"{name}.ipynb is out of sync with {name}.py: "
                                       f"run `jupytext --sync notebooks/{name}.py`")
    for c in ipynb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, \
                f"{name}.ipynb is stored with outputs: clear them (jupytext --sync rewrites it clean)"
    formats = ipynb.metadata.get("jupytext", {}).get("formats", "")
    assert "py:percent" in formats or (NOTEBOOK_DIR / "jupytext.toml").exists()
    params = py.cells[parameter_cell_index(py)].source
    assert 'SIZE = "small"' in params and "OUT_DIR" in params, \
        "the parameter cell sets SIZE (default small) and OUT_DIR"
    assert any('"full"' in c.source for c in py.cells if c.cell_type == "code"), "no full-size setting"


# ------------------------------------------------------------------------------------------ execution


def test_01_spheres_tour(kernel_env, tmp_path):
    s = run_notebook("01_spheres_tour", tmp_path)
    # the small ReLU net learns the task: < 5% error per sphere (measured ~0.1%)
    for sphere in ("inner", "outer"):
        assert s["final_error"][sphere]["rate"] < 0.05
    # the manifold attack stays on its sphere (1e-5 relative, its contract) and finds errors for
    # most points (measured 98-100%)
    for sphere, r in (("inner", 1.0), ("outer", 1.3)):
        assert s["on_manifold"][sphere]["max_radius_error"] <= 1e-4 * r
        assert s["on_manifold"][sphere]["found"] >= 0.8
        # off the manifold the nearest error is closer than on it (Gilmer §5)
        assert s["off_manifold"][sphere]["mean_distance"] < s["on_manifold"][sphere]["mean_distance"]
    pts = s["distance_vs_bound"]
    assert pts, "no snapshot had a measured inner-sphere error: nothing to put beside Theorem 5.1"
    for p in pts:
        assert 0 < p["mu"] <= 1 and math.isfinite(p["bound"]) and p["bound"] > 0


def test_02_quadratic_ellipsoid(kernel_env, tmp_path):
    s = run_notebook("02_quadratic_ellipsoid", tmp_path)
    # online training moves the spectrum into the perfect band (measured 100% after 3000 steps)
    assert s["final_fraction_in_range"] >= 0.9
    # the network's boundary lies on the ellipse computed from alpha: logit/(-b) at the semi-axis
    # ends is 0 up to float32 rounding (measured ~1e-7)
    assert max(abs(v) for v in s["axis_logits_over_b"]) < 1e-4
    checked = 0
    for row in s["rows"]:
        for sphere in ("inner", "outer"):
            r = row[sphere]
            p, n = r["exact"], r["n"]
            if 1e-3 <= p <= 0.5:
                # the network's measured rate is a binomial sample of the exact rate: 5 sigma
                assert abs(r["measured"] - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1 / n, (row["step"], sphere)
                checked += 1
            if p > 0:
                # importance-sampled MC agrees with the exact tail within a factor 2 (5000 draws;
                # measured within 10% down to 1e-10)
                assert r["mc"] > 0 and abs(math.log(r["mc"] / p)) < math.log(2.0), (row["step"], sphere)
            else:
                assert r["mc"] == 0.0
    assert checked >= 3, "too few snapshots with a measurable error rate to compare with theory"


def test_03_error_vs_distance(kernel_env, tmp_path):
    s = run_notebook("03_error_vs_distance", tmp_path)
    run, = s["runs"]
    assert run["finished"] and run["n_points_with_errors"] >= 1
    for c in run["caps"]:
        # on an actual cap the manifold attack finds the exact nearest point (measured gap < 1e-3)
        assert abs(c["d_E_attack"] - c["d_E_exact_same_points"]) < 0.01
        # and the sample mean estimates the cap's exact mean distance (40 points: ~5% standard error)
        assert abs(c["d_E_exact_same_points"] / c["d_E_theory"] - 1) < 0.15
    for r in s["ratios"]:
        assert 0 <= r["ratio"] < 10 and math.isfinite(r["ratio"])


def test_04_szegedy_lbfgs(kernel_env, tmp_path):
    s = run_notebook("04_szegedy_lbfgs", tmp_path)
    attacked = [n for n, m in s["models"].items() if "attack_success_rate" in m]
    assert attacked
    for n in attacked:
        m = s["models"][n]
        assert m["attack_success_rate"] >= 0.75 and m["targets_reached_in_box"]
        assert 0 < m["mean_distortion"] < 0.5
        # a successful targeted example is misclassified by its own model: the diagonal is 100%
        assert s["transfer"][n][n] == 1.0
    for n, m in s["models"].items():
        if m["epochs"] > 0:
            assert m["test_error"] < 0.5, n    # trained (chance is 90%)
    for n, lip in s["lipschitz"].items():
        # the measured Jacobian norm never exceeds the product bound ...
        assert lip["max_jacobian_norm"] <= lip["product_with_activations"] * (1 + 1e-3), n
        # ... and for one linear layer the two coincide (power iteration, relative 1e-3)
        if len(lip["layers"]) == 1:
            assert abs(lip["max_jacobian_norm"] / lip["product"] - 1) < 1e-3, n
    for purities in s["unit_purity"].values():
        assert all(0 < p <= 1 for p in purities)


def test_05_goodfellow_fgsm(kernel_env, tmp_path):
    s = run_notebook("05_goodfellow_fgsm", tmp_path)
    lr = s["logreg"]
    # FGSM on logistic regression moves every logit by exactly eps * ||w||_1 (float32: relative 1e-4)
    assert lr["fgsm_logit_change_max_gap"] <= 1e-4 * s["eps"] * lr["w_l1"]
    # minimal eps by bisection = |z| / ||w||_1 (20 halvings of [0, 2]: 2e-6)
    assert lr["min_eps_max_abs_diff"] < 1e-4
    n = s["binary"]["test_size"]
    for closed, attack, boxed in zip(lr["closed_form_error_at_grid"], lr["attack_error_at_grid"],
                                     lr["boxed_error_at_grid"]):
        assert abs(closed - attack) <= 2 / n      # unclipped FGSM error = closed form (ties aside)
        assert boxed <= attack + 1 / n            # clipping to the box only weakens a linear attack
    i = s["eps_grid"].index(s["eps"])
    adv = s["adversarial_training"]
    # closed-form adversarial training makes logistic regression far more robust (measured 95% -> 18%)
    assert adv["logreg"]["adversarial"]["error"][i] < adv["logreg"]["plain"]["error"][i] - 0.2
    assert adv["maxout"]["adversarial"]["error"][i] <= adv["maxout"]["plain"]["error"][i]
    # label-free attacks: PGD (20 steps from a random start) is at least as strong as one FGSM step
    # from the model's own prediction, up to 2 points of sampling noise on 500 test images; the
    # clean column is the curve's eps = 0 value, recomputed
    for label, row in s["label_leaking"].items():
        assert row["pgd_error"] >= row["fgsm_predicted_label_error"] - 0.02, (label, row)
        assert row["clean_error"] == adv["maxout"][label]["error"][0]
        assert row["pgd_steps"] >= 1
    # on the plain model, FGSM from its own prediction fools it more often than it errs clean
    assert s["label_leaking"]["plain"]["fgsm_predicted_label_error"] > s["label_leaking"]["plain"]["clean_error"]
