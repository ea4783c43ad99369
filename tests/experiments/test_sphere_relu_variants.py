"""``sphere-relu``'s training and evaluation options, validated, and the ``sphere-relu-variants``
quick preset (Gilmer §3: where do our ReLU net's errors come from)."""

import pytest

from spheres.config import ConfigError
from spheres.experiments import make_config, run_experiment
from spheres.experiments.sphere_relu_variants import EVAL_MODES, VARIANTS


@pytest.mark.parametrize("override, message", [
    ({"bn_momentum": 1.0}, "bn_momentum must be in"),
    ({"bn_momentum": -0.1}, "bn_momentum must be in"),
    ({"bn_epsilon": 0.0}, "bn_epsilon must be positive"),
    ({"init": "he_normal"}, "init"),
    ({"lr_schedule": "cosine"}, "lr_schedule"),
    ({"decay_fraction": 0.0}, "decay_fraction must be in"),
    ({"decay_fraction": 1.5}, "decay_fraction must be in"),
    ({"bn_stats": "batch"}, "bn_stats"),
    ({"population_samples": 1}, "population_samples must be"),
    ({"eval_dtype": "float16"}, "eval_dtype"),
])
def test_relu_options_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config("sphere-relu", "quick", override).validate()


def test_defaults_are_todays_behaviour():
    cfg = make_config("sphere-relu", "quick")
    assert (cfg.bn_momentum, cfg.bn_epsilon, cfg.init, cfg.lr_schedule, cfg.bn_stats, cfg.eval_dtype) == (
        0.99, 1e-5, "lecun_normal", "constant", "running", "float32")
    from spheres.experiments._sphere import make_model
    m = make_model(cfg)
    assert (m.momentum, m.epsilon, m.kernel_init) == (0.99, 1e-5, "lecun_normal")


def test_population_stats_need_a_batchnorm_net():
    with pytest.raises(ConfigError, match="needs model=relu"):
        make_config("sphere-quadratic", "quick", {"bn_stats": "population"}).validate()


def test_variants_config_rejects_unknown_variants_and_fixed_eval_options():
    with pytest.raises(ConfigError, match="variants must be"):
        make_config("sphere-relu-variants", "quick", {"variants": ("baseline", "dropout")}).validate()
    with pytest.raises(ConfigError, match="set per evaluation"):
        make_config("sphere-relu-variants", "quick", {"eval_dtype": "float64"}).validate()


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    return run_experiment("sphere-relu-variants", out, progress=False), out


def test_variants_quick_reports_every_variant_and_mode(variants):
    s, out = variants
    import json

    assert [r["variant"] for r in s["variants"]] == list(VARIANTS)
    for r in s["variants"]:
        assert list(r["modes"]) == [f"{a}/{b}" for a, b in EVAL_MODES]
        for e in r["modes"].values():
            for sphere in ("inner", "outer"):
                q = e[sphere]
                assert q["n"] == 20_000 and q["lower"] <= q["rate"] <= q["upper"]
        # the post-hoc running/float32 evaluation repeats the sub-run's own (same model, same key)
        sub = json.loads((out / r["variant"] / "summary.json").read_text())
        for sphere in ("inner", "outer"):
            assert r["modes"]["running/float32"][sphere]["errors"] == sub["error_rate"][sphere]["errors"]
        # the offset analysis reads the logits of the very points counted: at t = 0 it repeats the
        # float32 counts, and the best t never makes more errors than t = 0
        for stats in ("running", "population"):
            o, e = r["offsets"][stats], r["modes"][f"{stats}/float32"]
            assert (o["inner_at_0"], o["outer_at_0"]) == (e["inner"]["errors"], e["outer"]["errors"])
            assert o["total"] == o["inner"] + o["outer"] <= o["inner_at_0"] + o["outer_at_0"]
        assert r["distances"]["off_manifold_nearest"]["found"] >= 1
        assert "mean" in r["distances"]["off_manifold_nearest"]
    # the variants differ where they should: the sub-runs' configs carry their changes
    cfg = json.loads((out / "bn_epsilon_1e-3" / "config.json").read_text())
    assert cfg.get("bn_epsilon", cfg.get("config", {}).get("bn_epsilon")) == 1e-3


def test_variants_table_renders(variants):
    from spheres.experiments import get

    s, _ = variants
    text = get("sphere-relu-variants").table(s).text()
    assert "population/float64" in text and "init_glorot_uniform" in text
    assert len(get("sphere-relu-variants").paper_rows(s)) == len(VARIANTS) * len(EVAL_MODES)
    # the comparison table: every (variant, mode) but the reference, against the reference's counts
    tabs = get("sphere-relu-variants").table(s).tables
    assert len(tabs[2].rows) == 2 * len(VARIANTS) and "best offset t" in tabs[2].header
    comp = tabs[1]
    assert len(comp.rows) == len(VARIANTS) * len(EVAL_MODES) - 1
    ref = s["variants"][0]["modes"]["running/float32"]
    last = s["variants"][-1]["modes"]["population/float64"]
    assert comp.rows[-1][2].startswith(f"{last['inner']['errors']} vs {ref['inner']['errors']}: ")


def test_compare_counts_states_the_difference_and_its_verdict():
    from spheres.experiments.sphere_relu_variants import compare_counts

    n = 1_000_000
    e = lambda k: {"errors": k, "n": n}  # noqa: E731
    # 648 vs 505 in 10^6: the difference 1.43e-4 has a standard error √(648 + 505)/10^6 = 3.4e-5
    # (Poisson), so its 95 % interval excludes 0 by about 4 standard errors
    assert compare_counts(e(648), e(505)).startswith("648 vs 505: +1.4e-04 [+")
    assert compare_counts(e(648), e(505)).endswith("], higher")
    assert compare_counts(e(505), e(648)).endswith("], lower")
    # 503 vs 505: 0.04 standard errors apart
    assert compare_counts(e(503), e(505)).endswith("not told apart")
    assert compare_counts(e(0), e(0)) == "0 vs 0: +0.0e+00 [-3.7e-06, +3.7e-06], not told apart"


def test_distance_rows_report_the_mean_first_then_median_and_quantiles():
    """Gilmer et al. report mean distances: every distance row (the run table's and the paper
    comparison's) gives ours as mean first, then median and the 5–95 % quantiles, and the
    off-manifold row the mean norm the paper's "at ‖x̂‖ ≈ 1.07" compares with."""
    from spheres.experiments import _gilmer, _sphere

    def stats(m):
        return {"count": 3, "mean": m, "median": m - 0.01, "q05": m - 0.05, "q95": m + 0.05, "min": m - 0.06,
                "max": m + 0.06, "std": 0.01, "q25": m - 0.02, "q75": m + 0.02}

    a = {"n_points": 3, "n_correct": 3, "start_errors": 0,
         "on_manifold_nearest": {"found": 3, "distance": stats(0.2)},
         "off_manifold_nearest": {"found": 3, "distance": stats(0.1), "norm_at_min": 1.05,
                                  "norm": stats(1.07)},
         "worst_case": {"success": 3}, "random_pair_distance": {"mean": 1.41}}
    texts = [v for k, v in _sphere.attack_rows(a) if "nearest" in k]
    texts += [r.ours for r in _gilmer.attack_rows({"attacks": a}) if "nearest" in r.value.quantity]
    assert len(texts) == 4
    for t in texts:
        assert t.index("mean") < t.index("median") < t.index("5–95%")
    assert "mean ‖x̂‖ = 1.0700" in texts[-1] and "mean norm 1.0700" in texts[1]
