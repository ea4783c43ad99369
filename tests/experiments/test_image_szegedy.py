"""Szegedy et al. 2013 experiments: every ``quick`` preset on Fashion-MNIST, with number checks.

Each quick run happens once per test module (fixture ``run``) and several tests read its
summary and arrays. Thresholds are stated with the values measured on Fashion-MNIST quick runs.
"""

import importlib

import jax
import numpy as np
import pytest

from spheres.config import ConfigError
from spheres.experiments import get, make_config
from spheres.images import models as im
from spheres.images.evaluate import evaluate
from spheres.images.train import load_params, safe_name
from spheres.paper import PaperValue
from spheres.results import RunDir

SZEGEDY = ["szegedy-table1", "szegedy-transfer", "szegedy-cross-training", "szegedy-spectral",
           "szegedy-units", "szegedy-adversarial-training"]
GOODFELLOW = ["goodfellow-fgsm", "goodfellow-logistic", "goodfellow-adversarial-training",
              "goodfellow-agreement", "goodfellow-rubbish"]
IMAGE_EXPERIMENTS = SZEGEDY + GOODFELLOW



def test_every_image_experiment_has_quick_medium_paper_presets():
    """Every image experiment has exactly the presets quick, medium and paper; each validates and
    states its cost (an estimate or a measurement); ``full`` is the paper preset's old name; the
    dataset can be overridden; the paper values are data, on MNIST."""
    for name in IMAGE_EXPERIMENTS:
        exp = get(name)
        cls = exp.config_cls
        assert set(cls.PRESETS) == {"quick", "medium", "paper"}, name
        for preset in cls.PRESETS:
            make_config(name, preset).validate()
            cost = cls.COST.get(preset, "")
            assert cost.startswith("~"), (name, preset, cost)
        assert "estimate" in cls.COST["medium"] or "measured" in cls.COST["medium"], name
        assert cls.canonical_preset("full") == "paper"
        assert make_config(name, "full") == make_config(name, "paper")
        assert make_config(name, "quick").dataset == "fashion_mnist_sample"
        assert make_config(name, "medium").dataset == make_config(name, "paper").dataset == "fashion_mnist"
        with pytest.raises(ConfigError, match="unknown preset"):
            make_config(name, "huge")
        cfg = make_config(name, "quick", ["dataset=mnist", "data_dir=/x"])
        assert cfg.dataset == "mnist" and cfg.data_dir == "/x"
        assert exp.paper == ("szegedy" if name.startswith("szegedy") else "goodfellow")
        values = _paper_values(importlib.import_module(exp.run.__module__).PAPER)
        assert values and all(v.paper == exp.paper and v.dataset in ("MNIST", "ImageNet") for v in values), name


def _paper_values(paper) -> list:
    if isinstance(paper, PaperValue):
        return [paper]
    return [v for x in paper.values() for v in _paper_values(x)]


@pytest.mark.parametrize("name", SZEGEDY)
def test_quick_preset_runs_and_reports(check_quick_run, name):
    check_quick_run(name)


def _reload(out, name):
    return load_params(RunDir(out, "", {}), name)


def test_table1_examples_reach_their_targets_inside_the_box(run):
    """Every successful L-BFGS example is predicted as its target by its model (re-checked here on
    the saved example with the saved parameters) and lies in [0, 1]^784; success ≥ 90% (measured
    100%); FC10(1e-4) trains to < 25% test error (measured 21.3%)."""
    summary, out = run("szegedy-table1")
    assert set(summary["models"]) == set(make_config("szegedy-table1").models)
    for name, row in summary["models"].items():
        assert row["attack_success_rate"] >= 0.9, name
        assert row["targets_reached_in_box"]
        assert 0.0 < row["mean_distortion"] < 0.5
        ex = np.load(out / f"adv-{safe_name(name)}.npz")
        assert ex["x_adv"].min() >= 0.0 and ex["x_adv"].max() <= 1.0
        assert np.all(ex["target"] != ex["y"])
        v = _reload(out, name)
        pred = evaluate(im.paper_model(name).module, v, ex["x_adv"], ex["y"]).predictions
        np.testing.assert_array_equal(pred[ex["success"]], ex["target"][ex["success"]])
        d = np.sqrt(((ex["x_adv"] - ex["x"]) ** 2).reshape(len(ex["x"]), -1).mean(1))
        np.testing.assert_allclose(d, ex["distortion"], rtol=1e-4, atol=1e-6)
    assert summary["models"]["FC10(1e-4)"]["test_error"] < 0.25

def test_transfer_diagonal_is_full_and_rows_are_rates(run):
    summary, _ = run("szegedy-transfer")
    m = summary["transfer_error_rate"]
    for name in summary["models"]:
        assert m[name][name] == 1.0          # each example reached a wrong target on its own model
        assert all(0.0 <= m[name][c] <= 1.0 for c in summary["models"])
    for row in ("noise σ=0.1", "noise σ=0.3", "clean (no perturbation)"):
        assert row in m
    # noise of σ = 0.1 barely matters compared with adversarial examples of smaller L2 size
    assert m["noise σ=0.1"]["FC10(1e-4)"] <= m["clean (no perturbation)"]["FC10(1e-4)"] + 0.25

def test_cross_training_models_and_diagonal(run):
    summary, _ = run("szegedy-cross-training")
    assert [r["trained_on"] for r in summary["models"].values()] == ["P1", "P1", "P2"]
    m = summary["transfer_error_rate"]
    for name in summary["models"]:
        assert m[name][name] == 1.0
        assert f"{name} scaled to stddev 0.1" in m
    assert "noise stddev 0.1" in m

def test_spectral_bounds_hold_and_are_exact_for_linear_models(run):
    """Measured ‖∂logits/∂x‖ never exceeds the product bound; for softmax regression the Jacobian
    is W itself, so the measured norm equals the bound (power iteration, rel. 1e-3)."""
    summary, _ = run("szegedy-spectral")
    for name, r in summary["models"].items():
        assert r["bound_holds"], name
        assert all(l["bound"] > 0 for l in r["layers"])
    lin = summary["models"]["FC10(1e-4)"]
    np.testing.assert_allclose(lin["measured_max_jacobian_norm"], lin["upper_bound_product"], rtol=1e-3)
    kinds = [l["kind"] for l in summary["models"]["conv"]["layers"]]
    assert kinds[0].startswith("conv") and kinds[1].startswith("conv") and "s2" in kinds[1]

def test_units_grid_and_purity(run):
    summary, out = run("szegedy-units")
    cfg = make_config("szegedy-units")
    assert (out / "units_vs_random_directions.png").stat().st_size > 1000
    assert len(summary["unit_label_purity"]) == len(summary["random_direction_label_purity"]) == cfg.n_directions
    for p in summary["unit_label_purity"] + summary["random_direction_label_purity"]:
        assert 1.0 / cfg.top_k <= p <= 1.0
    # top images of a direction are far more coherent than random images (measured 0.84 vs 0.32)
    assert summary["random_direction_label_purity_mean"] > summary["chance_label_purity_reference"]

def test_szegedy_adversarial_pool_was_generated(run):
    summary, out = run("szegedy-adversarial-training")
    assert set(summary["variants"]) == {"weight decay only", "adversarial pool", "dropout (for reference)"}
    recs = [r for r in RunDir(out, "", {}).read_metrics() if "pool_refresh_epoch" in r]
    assert [r["pool_refresh_epoch"] for r in recs] == [0, 2]
    assert recs[0]["pool_attack_success_rate"] is None          # clean copies before any training
    assert recs[1]["pool_attack_success_rate"] >= 0.8            # measured 100%


def test_transfer_controls_both_correct_and_matched_distortion(run):
    """The two controls of the transfer matrix are rates over the same, smaller set of examples:
    the diagonal of 'both correct' stays 100% (own successful examples), and the matched-distortion
    matrix is defined wherever the raw one is."""
    s, out = run("szegedy-transfer")
    both, matched = s["transfer_error_rate_both_correct"], s["transfer_error_rate_matched_distortion"]
    for r in s["models"]:
        assert both[r][r] == 1.0
        for c in s["models"]:
            assert 0.0 <= both[r][c] <= 1.0 and 0.0 <= matched[r][c] <= 1.0
        assert both[r]["_count"] <= s["transfer_error_rate"][r]["_count"]
        # each control rate is a count over its own cell's examples, kept for its interval
        assert both[r]["_n"] == matched[r]["_n"] and set(both[r]["_n"]) == set(s["models"])
        for c, n in both[r]["_n"].items():
            assert n <= s["transfer_error_rate"][r]["_count"]
            assert abs(both[r][c] * n - round(both[r][c] * n)) < 1e-6 if n else np.isnan(both[r][c])
    text = get("szegedy-transfer").table(s).text()
    assert "Control 1" in text and "% [" in text          # the rates carry their intervals
    # the training-image matrix: the quick preset attacks as many training images as test images,
    # with keys and a cache file of their own (not the test examples again)
    tr = s["transfer_error_rate_train_images"]
    assert s["train_images"] == make_config("szegedy-transfer").n_attack == 32 and list(tr) == s["models"]
    for r in s["models"]:
        assert tr[r][r] == 1.0 and 1 <= tr[r]["_count"] <= 32 and tr[r]["_distortion"] > 0
    assert (out / f"adv-{safe_name('FC10(1e-4)-train')}.npz").exists()
    assert "Training images: L-BFGS examples of the first 32 training images" in text
    rows = get("szegedy-transfer").paper_rows(s)
    assert all("; from training images " in r.ours for r in rows if "examples" in r.value.quantity)


def test_transfer_controls_of_a_record_without_counts_per_cell_show_the_rate_alone():
    """Records made before the counts per cell were kept hold only the last column's ``_count`` for
    the controls: their rates are shown without an interval rather than over a wrong n."""
    from spheres.experiments.szegedy_transfer import _cell, _control_cell

    old = {"A": 0.25, "B": 0.4, "_count": 5}           # 0.25 is no count over 5: the n is A's own, unknown
    assert _control_cell(old, "A") == "25.0%"
    assert _control_cell({**old, "_n": {"A": 4, "B": 5}}, "A").startswith("25.0% [")
    assert _cell({"A": 0.4, "_count": 5}, "A").startswith("40.0% [")


def test_unit_purity_claim_is_stated_at_its_weight():
    """The units-vs-random-directions comparison carries an exact permutation p-value over its
    grids, and a difference is claimed only when p < 0.05 (checked against hand counts: with 2 + 2
    grids, {1, 1} vs {0, 0} and its mirror are the 2 most extreme of C(4, 2) = 6 splits, p = 2/6; eight
    1s against eight ½s, 2 of C(16, 8) = 12,870 splits, p = 1.6e-4)."""
    from spheres.experiments.szegedy_units import purity_difference

    archived = {"unit_label_purity": [1.0, 1.0, 0.625, 0.625, 0.375, 1.0, 1.0, 1.0],
                "random_direction_label_purity": [0.625, 1.0, 0.75, 0.625, 0.875, 0.75, 0.5, 0.625]}
    text = purity_difference(archived)
    assert text.startswith("difference +0.11, exact permutation p = 0.38 over 8 + 8 grids") and "not told apart" in text
    assert "p = 0.33 over 2 + 2" in purity_difference({"unit_label_purity": [1.0, 1.0],
                                                      "random_direction_label_purity": [0.0, 0.0]})
    apart = purity_difference({"unit_label_purity": [1.0] * 8, "random_direction_label_purity": [0.5] * 8})
    assert "p = 0.00016" in apart and "units are more coherent, unlike the paper's claim" in apart


def test_adversarial_pool_row_compares_the_two_test_errors():
    from spheres.experiments import get

    s = {"variants": {"weight decay only": {"test_error": 0.115}, "adversarial pool": {"test_error": 0.107}},
         "dataset_detail": {"test_size": 10_000}, "dataset": "fashion_mnist"}
    rows = {r.value.quantity: r for r in get("szegedy-adversarial-training").paper_rows(s)}
    row = rows["test error, adversarial pool minus weight decay only"]
    assert row.ours.startswith("-0.8 points [-1.7, +0.1], not told apart at 95% (one seed): inconclusive")


def test_szegedy_dropout_baseline_is_a_third_model_added_on_resume(run, tmp_path, monkeypatch_module):
    """The dropout baseline (quick preset: rate 0.5) is trained from the same start as the others,
    is a different model (dropout changes training), and has its own paper rows. Changing the rate
    on a finished run trains and attacks that model only: the other two keep their parameters."""
    import shutil

    from spheres.experiments import run_experiment

    summary, out = run("szegedy-adversarial-training")
    assert summary["dropout"] == 0.5
    recipe = im.paper_model("FC100-100-10")
    plain = load_params(RunDir(out, "", {}), "FC100-100-10")
    drop = load_params(RunDir(out, "", {}), "FC100-100-10+dropout0.5")
    assert drop is not None and plain is not None
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
               zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(drop)))
    assert diff > 1e-3                                  # trained differently from the same start
    v = summary["variants"]["dropout (for reference)"]
    assert 0.0 < v["test_error"] < 0.5 and 0.0 <= v["fgsm_eps0.1_error"] <= 1.0
    assert v["test_error"] == pytest.approx(evaluate(recipe.module, drop, *_quick_test_set()).error, abs=1e-9)
    rows = {r.value.quantity: r for r in get("szegedy-adversarial-training").paper_rows(summary)}
    assert rows["test error with dropout"].note.endswith("dropout rate 0.5 after each hidden layer")
    assert "% [" in rows["test error with dropout"].ours
    assert " points [" in rows["test error, adversarial pool minus dropout"].ours
    assert "dropout rate 0.5 after each hidden layer" in get("szegedy-adversarial-training").table(summary).text()

    # a finished run with another rate: only the new model is trained (the others' files unchanged)
    again = tmp_path / "again"
    shutil.copytree(out, again)
    before = {p.name: p.read_bytes() for p in again.glob("params-*.npz")}
    s2 = run_experiment("szegedy-adversarial-training", again, preset="quick", overrides=["dropout=0.25"],
                        progress=False)
    after = {p.name: p.read_bytes() for p in again.glob("params-*.npz")}
    assert set(after) - set(before) == {"params-FC100-100-10+dropout0.25.npz"}
    assert all(after[k] == before[k] for k in before)
    assert s2["dropout"] == 0.25
    assert s2["variants"]["weight decay only"] == summary["variants"]["weight decay only"]
    assert s2["variants"]["dropout (for reference)"] != summary["variants"]["dropout (for reference)"]


def _quick_test_set():
    from spheres.experiments._image import load_data

    ds = load_data(make_config("szegedy-adversarial-training"))
    return ds.x_test, ds.y_test


@pytest.mark.parametrize("bad", ["-0.1", "1.0", "1.5"])
def test_szegedy_dropout_rate_is_validated(bad):
    with pytest.raises(ConfigError, match="dropout must be a rate in"):
        make_config("szegedy-adversarial-training", "quick", [f"dropout={bad}"]).validate()
    make_config("szegedy-adversarial-training", "quick", ["dropout=0"]).validate()    # 0: not trained
