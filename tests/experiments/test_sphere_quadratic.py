"""Quick presets of the quadratic-network experiments (Gilmer §4): theory agrees with measurement."""

import json

import jax
import numpy as np
import pytest
from scipy import stats

import theory
from spheres.experiments import make_config, run_experiment


def _binom_consistent(rate: float, errors: int, n: int, level: float = 1e-4) -> bool:
    """Is `errors` out of `n` consistent with the probability `rate`? Two-sided binomial test at
    level 1e-4 (a correct theory fails it once in 10^4 runs; seeds are fixed so the suite is stable)."""
    if rate == 0.0:
        return errors == 0
    return stats.binomtest(errors, n, min(rate, 1.0)).pvalue > level


@pytest.fixture(scope="module")
def quad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("quad")
    return run_experiment("sphere-quadratic", d), d


@pytest.fixture(scope="module")
def quad(quad_dir):
    return quad_dir[0]


def test_quadratic_run_writes_its_training_figure_and_timing(quad_dir):
    s, d = quad_dir
    assert (d / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timing = json.loads((d / "train_timing.json").read_text())
    assert timing["step"] == timing["steps_timed"] == s["steps"] == s["steps_timed"]
    assert 0 < s["train_seconds"] <= s["wall_seconds"]


@pytest.fixture(scope="module")
def finite(tmp_path_factory):
    return run_experiment("sphere-quadratic-finite", tmp_path_factory.mktemp("finite"))


def test_online_quadratic_becomes_perfect_and_theory_matches(quad):
    th = quad["theory"]
    # online training at d = 50 reaches the perfect band well within 20k steps (first seen ~9k)
    assert th["perfect"] and quad["first_perfect_step"] is not None
    # a perfect net has exactly zero error probability, so no measured error may occur
    assert quad["error_rate"]["inner"]["errors"] == 0 and quad["error_rate"]["outer"]["errors"] == 0
    assert th["log10_exact_inner"] == -np.inf and th["log10_exact_outer"] == -np.inf
    # ... while the CLT still predicts a positive rate: the CLT is wrong here by construction
    assert th["log10_clt_inner"] > -np.inf


def test_finite_sweep_exact_matches_measured_and_importance_mc(finite):
    rows = finite["rows"]
    assert [r["train_size"] for r in rows] == [100, 1000, 10_000]
    for r in rows:
        for s in ("inner", "outer"):
            exact = 10 ** r[f"log10_exact_{s}"]
            m = r["measured"][s]
            assert _binom_consistent(exact, m["errors"], m["n"]), (r["train_size"], s, exact, m)
            mc = r["importance_mc"][s]
            if exact > 0:
                # the importance-sampled estimate's 95% CLT interval, widened x2 for a 1e-4-level check
                half = (mc["upper"] - mc["lower"])
                assert mc["lower"] - half <= exact <= mc["upper"] + half, (r["train_size"], s, exact, mc)
    # more data -> fewer alphas outside the band (monotone in this sweep)
    outside = [r["alpha_outside"] for r in rows]
    assert outside[0] >= outside[1] >= outside[2]


def test_perfect_init_starts_perfect_then_drifts(tmp_path):
    s = run_experiment("sphere-quadratic-perfect-init", tmp_path)
    assert s["initial"]["step"] == 0 and s["initial"]["perfect"] and s["initial"]["alpha_fraction_in_range"] == 1.0
    assert s["first_imperfect_step"] is not None and s["first_imperfect_step"] > 0
    th = s["final_theory"]
    for sphere in ("inner", "outer"):
        e = s["error_rate"][sphere]
        assert _binom_consistent(10 ** th[f"log10_exact_{sphere}"], e["errors"], e["n"])


def test_simplified_model_matches_the_general_exact_formula(tmp_path):
    cfg = make_config("sphere-simplified-model", "quick")
    s = run_experiment("sphere-simplified-model", config=cfg, out_dir=tmp_path)
    # two independent exact methods: the Beta closed form (experiment) and the saddlepoint contour
    # on the explicit alpha vector; they agree to 1e-8 relative in log space
    with jax.enable_x64(True):
        for d in (100, 500):
            alpha = theory.simplified_alpha(d // 2, d, cfg.a_bad, cfg.a_good)
            ref = theory.exact_error_rate(alpha, sphere="inner", R=cfg.R, log=True) / np.log(10)
            np.testing.assert_allclose(s["half_bad"][str(d)]["log10_exact"], ref, rtol=1e-8)
    # the table lists d in numeric order, also after a JSON round trip (keys sorted as strings)
    from spheres.experiments import get

    table = get("sphere-simplified-model").table({**s, "half_bad": {str(d): s["half_bad"][str(d)]
                                                                    for d in (3000, 500, 100)}})
    assert [int(r[0]) for r in table.tables[0].rows] == [100, 500, 3000]


def test_finite_table_has_importance_mc_column(finite):
    from spheres.experiments import get

    t = get("sphere-quadratic-finite").table(finite).tables[0]
    col = t.header.index("IS-MC inner / outer")
    assert len(t.rows) == len(finite["rows"])
    for row, r in zip(t.rows, finite["rows"]):
        inner, outer = row[col].split(" / ")
        for text, est in ((inner, r["importance_mc"]["inner"]), (outer, r["importance_mc"]["outer"])):
            if est["log_rate"] == -np.inf:
                assert text == "0"          # an exact zero: no coefficient has the error sign
            else:
                assert text != "0" and float(text.replace("10^", "")) != 0.0
