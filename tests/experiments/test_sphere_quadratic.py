"""Quick presets of the quadratic-network experiments (Gilmer §4): theory agrees with measurement."""

import json
import math

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
    # the α row says how long each N was trained (quick: 20,000 steps of 50 = 10,000 epochs of
    # N = 100, 100 of N = 10,000) and that the paper's length is not known
    from spheres.experiments import get

    notes = [r.note for r in get("sphere-quadratic-finite").paper_rows(finite) if "α outside" in r.quantity]
    assert notes[0].startswith("after 20,000 steps = 10,000 epochs;") and "= 100 epochs;" in notes[2]
    assert all("training length for its finite-set run is not stated" in n for n in notes)


def test_finite_sweep_keeps_the_alpha_count_over_training(finite):
    """Every tracked step's count (quick: every 5,000 of 20,000 steps) is in the summary, the last
    one is the final count (the same parameters), and the table reads it at fractions of training."""
    from spheres.experiments import get

    for r in finite["rows"]:
        traj = r["alpha_outside_over_training"]
        assert [step for step, _ in traj] == list(range(0, 20_001, 5000))
        assert traj[-1][1] == r["alpha_outside"] and all(0 <= c <= 50 for _, c in traj)
    t = get("sphere-quadratic-finite").table(finite).tables[-1]
    assert t.caption == "α outside [1/R², 1] (of 50) during training; tracked every 5,000 steps"
    # 1 % to 20 % of training (200 to 4,000 steps) come before the first tracked step after 0: they
    # would repeat step 0's count and get no column
    assert t.header == ("N", "step 0", "step 10,000", "step 20,000", "fewest (first step)")
    first = finite["rows"][0]["alpha_outside_over_training"]
    assert t.rows[0][1:4] == (str(first[0][1]), str(first[2][1]), str(first[-1][1]))
    low = min(first, key=lambda sc: (sc[1], sc[0]))
    assert t.rows[0][-1] == f"{low[1]} at step {low[0]:,}"


def test_count_table_columns_and_cells():
    """A made-up record of 100,000 steps: N = 10 tracked every 20,000, N = 20 only at 0 and the end.
    The 1 %, 2 %, 5 % and 10 % columns would repeat step 0 in both rows and are left out; 20 %
    reads step 20,000 for N = 10 and step 0 for N = 20. Mixed intervals name none."""
    from spheres.experiments.sphere_quadratic_finite import over_training_table

    rows = [{"train_size": 10, "alpha_outside_over_training": [[0, 9], [20_000, 7], [40_000, 5], [60_000, 5],
                                                               [80_000, 6], [100_000, 6]]},
            {"train_size": 20, "alpha_outside_over_training": [[0, 8], [100_000, 3]]},
            {"train_size": 30}]                        # a record without the trajectory: no row
    t = over_training_table({"d": 10, "steps": 100_000, "rows": rows})
    assert t.header == ("N", "step 0", "step 20,000", "step 50,000", "step 100,000", "fewest (first step)")
    assert list(t.rows) == [("10", "9", "7", "5", "6", "5 at step 40,000"), ("20", "8", "8", "8", "3", "3 at step 100,000")]
    assert t.caption == "α outside [1/R², 1] (of 10) during training"
    assert over_training_table({"d": 10, "steps": 1, "rows": rows[2:]}) is None


def test_finite_sweep_across_seeds(finite):
    """Two summaries (the run and a copy with every α count +3 and one more inner error): the rows
    give the mean count with its t interval over seeds, and the pooled measured errors."""
    import copy

    from spheres.experiments.sphere_quadratic_finite import seed_rows

    other = copy.deepcopy(finite)
    other["seed"] = 1
    for r in other["rows"]:
        r["alpha_outside"] += 3
        r["measured"]["inner"]["errors"] += 1
    rows = seed_rows([finite, other])
    assert len(rows) == 4 * len(finite["rows"])
    r0 = finite["rows"][0]
    a = r0["alpha_outside"]
    # t interval of two values a, a + 3: mean ± t₀.₉₇₅,₁ · 1.5 (t = 12.706)
    lo, hi = max(a + 1.5 - 12.7062 * 1.5, 0), min(a + 1.5 + 12.7062 * 1.5, 50)
    assert rows[0].ours.startswith(f"mean {a + 1.5:.1f} of 50 [{math.floor(10 * lo) / 10:.1f}, "
                                   f"{math.ceil(10 * hi) / 10:.1f}] over 2 seeds (seed 0: {a}, seed 1: {a + 3})")
    assert rows[0].quantity == "N = 100: α outside [1/R², 1]"
    e, n = r0["measured"]["inner"]["errors"], r0["measured"]["inner"]["n"]
    assert rows[3].ours.startswith(f"inner {2 * e + 1}/{2 * n:,} = " if 2 * e + 1 else "inner 0/")
    assert "pooled over 2 seeds" in rows[3].quantity
    assert "geometric mean over seeds" in rows[1].quantity and rows[1].ours.endswith("over 2 seeds")


def test_the_step_where_the_count_meets_the_papers():
    """At the paper's d = 500 the α row says when the count first fell to the paper's 394 (here a
    made-up trajectory: 429 at the start, 400 at step 20,000, 390 at 40,000); other d say nothing."""
    from spheres.experiments import sphere_quadratic_finite as f

    row = {"train_size": 1_000_000, "d": 500, "alpha_outside_over_training": [[0, 429], [20_000, 400], [40_000, 390]]}
    assert f.first_at_paper_count(row) == 40_000
    assert f._paper_count_note({"batch": 50}, [row]) == "; first ≤ 394 at a tracked step: step 40,000 = 2 epochs"
    assert f.first_at_paper_count({**row, "alpha_outside_over_training": [[0, 300], [20_000, 400]]}) is None
    assert f._paper_count_note({"batch": 50}, [{**row, "d": 50}]) == ""


def test_rates_over_seeds_are_geometric_means_cut_at_one():
    from spheres.experiments.sphere_quadratic_finite import _log10_over_seeds

    # 1e-12 and 1e-10: geometric mean 1e-11; t interval of the log10s -11 ± 12.706 -> cut at 10^0
    assert _log10_over_seeds([-12.0, -10.0]) == "1e-11 [1.97e-24, 1]"
    assert _log10_over_seeds([-12.0, -np.inf]) == "0 for some seed"


def test_perfect_init_starts_perfect_at_the_papers_outputs_then_drifts(tmp_path):
    s = run_experiment("sphere-quadratic-perfect-init", tmp_path)
    assert s["initial"]["step"] == 0 and s["initial"]["perfect"] and s["initial"]["alpha_fraction_in_range"] == 1.0
    # the start is scaled to the paper's sigmoid outputs 0.0016 / 0.9994 at the mean alpha (exact
    # by construction: the mean of 100 uniform alphas sits within ~1% of the band's centre)
    assert s["init_outputs_mean"]["inner"] == pytest.approx(0.0016, rel=0.3)
    assert s["init_outputs_mean"]["outer"] == pytest.approx(0.9994, abs=3e-4)
    assert s["first_imperfect_step"] is not None and s["first_imperfect_step"] > 0
    traj = s["trajectory"]
    # tracked every 100 steps through early_until = 2000, then every track_every = 500
    steps = [t["step"] for t in traj]
    assert steps[:21] == list(range(0, 2001, 100)) and all(b - a == 500 for a, b in zip(steps[21:], steps[22:]))
    # the average loss falls while the exact worst case rises (the paper's divergence)
    wc = [max(t["exact_worst_case_loss_inner"], t["exact_worst_case_loss_outer"]) for t in traj]
    assert traj[-1]["loss"] < traj[1]["loss"] and wc[-1] > 10 * wc[0]
    # the attack's worst case never exceeds the exact worst case (it is a lower bound), to float32
    for t in traj:
        for side in ("inner", "outer"):
            a = t[f"attack_worst_case_loss_{side}"]
            assert a <= t[f"exact_worst_case_loss_{side}"] * (1 + 1e-4) + 1e-6, (t["step"], side)
    th = s["final_theory"]
    for sphere in ("inner", "outer"):
        e = s["error_rate"][sphere]
        assert _binom_consistent(10 ** th[f"log10_exact_{sphere}"], e["errors"], e["n"])


def test_perfect_init_paper_rows_from_a_made_up_record():
    """The start has no training loss: the average is read from the first step that has one. A
    first step never reached says so; a record from before the attack was tracked says that."""
    from spheres.experiments.sphere_quadratic_perfect_init import paper_rows

    def point(step, loss, wc):
        return {"step": step, "loss": loss, "exact_worst_case_loss_inner": wc, "exact_worst_case_loss_outer": wc / 2}

    s = {"steps": 20_000, "init_outputs_mean": {"inner": 0.0016, "outer": 0.9994},
         "trajectory": [point(0, None, 0.02), point(100, 1e-3, 0.05), point(20_000, 1e-8, 300.0)],
         "first_imperfect_step": 1200, "first_attack_error_step": None}
    outputs, diverge, found = (r.ours for r in paper_rows(s))
    assert outputs == "0.0016 / 0.9994 (at the mean α)"
    assert diverge == ("exact worst case 0.02 → 300 (step 0 → 20,000); average 0.001 → 1e-08 "
                       "(step 100 → 20,000)")
    assert found == "step 1,200 (exact: first α outside the band); none in 20,000 steps (manifold attack)"
    # a worst case that peaks and falls again (the paper preset's N = 10^6) names its peak
    peaked = {**s, "trajectory": [*s["trajectory"][:2], point(10_000, 1e-4, 9.0), point(20_000, 1e-8, 0.3)]}
    assert paper_rows(peaked)[1].ours.startswith("exact worst case 0.02 → 9 → 0.3 (step 0 → 10,000, its peak "
                                                 "→ 20,000); average 0.001 → 1e-08")
    old = {k: v for k, v in s.items() if k not in ("first_attack_error_step", "init_outputs_mean")}
    assert paper_rows(old)[-1].ours.endswith("; not tracked (manifold attack)")
    assert paper_rows(old)[0].ours.startswith("not scaled in this record")


def test_simplified_model_is_the_papers_threshold_model(tmp_path):
    s = run_experiment("sphere-simplified-model", tmp_path)
    # the experiment's numbers are theory.threshold's: the 50% table at d = 3000 and the curves
    r = theory.optimal_threshold(1500, 3000, R=1.3, method="clt", criterion="max")
    row = next(h for h in s["half_input"] if h["d"] == 3000 and h["method"] == "clt" and h["criterion"] == "max")
    assert row["log10_error"] == pytest.approx(r.log10_error, abs=1e-9)
    assert -23 < row["log10_error"] < -21          # ~3e-22, not the paper's 1e-14
    i = s["dims"].index(3000)
    k = theory.required_k(3000, 1e-14, R=1.3, method="clt", criterion="max")
    assert s["required_fraction"]["clt"][s["targets"].index(1e-14)][i] == pytest.approx(k / 3000)
    # the exact route needs less of the input than the CLT for the same target (the CLT is
    # pessimistic in these tails at d = 3000)
    assert s["required_fraction"]["exact"][s["targets"].index(1e-14)][i] < k / 3000
    from spheres.experiments import get

    exp = get("sphere-simplified-model")
    assert "midway" in exp.paper_rows(s)[0].note
    assert len(exp.table(s).tables) == 3


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
