"""Results across seeds: the t interval over seeds, its text, and the grouping of run records that
differ only in their seed (`spheres.report.seed_groups` / `seed_sections`)."""

import json
import math
import shutil
from pathlib import Path

import pytest

from spheres import report
from spheres.tables import difference_over_seeds, mean_interval, over_seeds

RUNS = Path(__file__).resolve().parents[2] / "docs" / "runs"
ADV = RUNS / "goodfellow-adversarial-training-medium"


def test_mean_interval_is_students_t_over_the_seeds():
    # mean 1, sample sd 1 over k = 3: 1 ± t_{0.975, 2}/√3. Student's t with 2 degrees of freedom
    # has the closed-form CDF 1/2 + t / (2√(2 + t²)), so t_{0.975, 2} = √(2·0.95² / (1 − 0.95²));
    # with 1 degree of freedom (Cauchy) t_{0.975, 1} = tan(0.475π). 1e-12: float rounding.
    m, lo, hi = mean_interval([0.0, 1.0, 2.0])
    half = math.sqrt(2 * 0.95**2 / (1 - 0.95**2)) / math.sqrt(3)
    assert m == 1.0
    assert lo == pytest.approx(1 - half, abs=1e-12) and hi == pytest.approx(1 + half, abs=1e-12)
    # k = 2, values 0.10 and 0.14: mean 0.12, s = |a − b|/√2, half = t_{0.975, 1}·s/√2 = 0.02·t
    m2, _, hi2 = mean_interval([0.10, 0.14])
    assert m2 == pytest.approx(0.12, abs=1e-15)
    assert hi2 - m2 == pytest.approx(math.tan(0.475 * math.pi) * 0.02, rel=1e-10)
    # a 90 % interval is narrower than the 95 % one
    _, lo90, hi90 = mean_interval([0.0, 1.0, 2.0], 0.90)
    assert lo < lo90 < 1.0 < hi90 < hi


def test_equal_values_have_a_zero_width_interval():
    assert mean_interval([0.25, 0.25, 0.25]) == (0.25, 0.25, 0.25)


@pytest.mark.parametrize("values", [[0.1], [], [0.1, float("nan")], [0.1, float("inf"), 0.2]])
def test_mean_interval_needs_two_finite_values(values):
    with pytest.raises(ValueError, match="at least two finite values"):
        mean_interval(values)


def test_over_seeds_text_names_each_seed_and_rounds_outward():
    text = over_seeds([0.1275, 0.1201, 0.1322], [0, 1, 2])
    m, lo, hi = mean_interval([0.1275, 0.1201, 0.1322])
    assert text.startswith(f"mean {100 * m:.1f}% [")
    shown = [float(x) for x in text.split("[")[1].split("]")[0].split(",")]
    assert shown[0] <= 100 * lo and shown[1] >= 100 * hi
    assert shown[0] > 100 * lo - 0.1 and shown[1] < 100 * hi + 0.1
    assert "over 3 seeds (seed 0: 12.8%, seed 1: 12.0%, seed 2: 13.2%)" in text


def test_over_seeds_keeps_rates_within_0_and_100_percent():
    m, lo, hi = mean_interval([1.0, 1.0, 0.995])
    assert hi > 1.0                                   # the t interval itself runs past 100 %
    assert "[99.1, 100.0]" in over_seeds([1.0, 1.0, 0.995], [0, 1, 2])
    assert "[0.0, 0.4]" in over_seeds([0.0, 0.0, 0.002], [0, 1, 2])    # mean 0.07 %, half-width 0.29 %


def test_difference_over_seeds_verdicts():
    higher = difference_over_seeds([0.010, 0.012, 0.011], [0, 1, 2])
    assert higher.startswith("+1.1 points [") and "higher at 95% across training runs" in higher
    lower = difference_over_seeds([-0.010, -0.012, -0.011], [0, 1, 2])
    assert "lower at 95% across training runs" in lower
    mixed = difference_over_seeds([0.010, -0.012, 0.004], [3, 4, 5])
    assert "not told apart at 95%: inconclusive" in mixed
    assert "(seed 3: +1.0, seed 4: -1.2, seed 5: +0.4)" in mixed


def _copy_run(src: Path, dst: Path, seed: int, shift: float, **config) -> Path:
    """A copy of an archived record with another seed, its clean errors moved by ``shift`` (a count
    of images over n_eval, so the rates stay counts) and config keys replaced."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["config"].update(seed=seed, **config)
    (dst / "config.json").write_text(json.dumps(cfg))
    man = json.loads((dst / "manifest.json").read_text())
    man["seed"] = seed
    (dst / "manifest.json").write_text(json.dumps(man))
    s = json.loads((dst / "summary.json").read_text())
    s["seed"] = seed
    for label, row in s["variants"].items():
        row["clean_error"] = round(row["clean_error"] + (shift if label.startswith("fgsm") else 0.0), 4)
    (dst / "summary.json").write_text(json.dumps(s))
    return dst


@pytest.mark.skipif(not ADV.exists(), reason="needs the archived goodfellow-adversarial-training-medium record")
def test_records_equal_but_for_the_seed_are_reported_together(tmp_path):
    runs = tmp_path / "runs"
    a = _copy_run(ADV, runs / "a", 0, 0.0)
    b = _copy_run(ADV, runs / "b", 1, -0.0040)
    c = _copy_run(ADV, runs / "c", 2, -0.0020)
    _copy_run(ADV, runs / "other", 3, 0.0, n_eval=5000)       # another config: not in the group
    _copy_run(ADV, runs / "dup", 0, 0.5)                        # the same seed again: the first is kept
    paths = report.find_runs([runs])
    groups = report.seed_groups(paths)
    assert [(e, p, [q.name for q in g]) for e, p, g in groups] == [
        ("goodfellow-adversarial-training", "medium", ["a", "b", "c"])]

    page = report.seed_sections(paths)
    assert page.startswith("### goodfellow-adversarial-training across seeds")
    assert "seeds 0, 1, 2" in page
    s = json.loads((ADV / "summary.json").read_text())
    base = s["variants"]["fgsm adversarial (α=0.5)"]["clean_error"] - s["variants"]["plain"]["clean_error"]
    diffs = [base, base - 0.0040, base - 0.0020]
    m = sum(diffs) / 3
    assert f"{100 * m:+.1f} points [" in page
    assert "(seed 0: " + f"{100 * diffs[0]:+.1f}, seed 1: {100 * diffs[1]:+.1f}, seed 2: {100 * diffs[2]:+.1f})" in page
    plain = s["variants"]["plain"]["clean_error"]
    same = f"{100 * plain:.1f}%"
    assert f"over 3 seeds (seed 0: {same}, seed 1: {same}, seed 2: {same})" in page
    # the whole report of those directories ends with the same section
    assert report.build_report([runs]).endswith(page)
    # a group of one seed, or an experiment without seed_rows, gives no section
    assert report.seed_sections([a]) == ""
    # a preset alias is its preset: a record made as "full" joins those made as "paper"
    for run, preset in ((a, "paper"), (b, "full"), (c, "paper")):
        m = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps(dict(m, preset=preset)))
    assert [(e, p, len(g)) for e, p, g in report.seed_groups(paths)] == [
        ("goodfellow-adversarial-training", "paper", 3)]


SZEGEDY = RUNS / "szegedy-adversarial-training-paper"


@pytest.mark.skipif(not SZEGEDY.exists(), reason="needs the archived szegedy-adversarial-training-paper record")
def test_szegedy_pool_effect_across_seeds(tmp_path):
    """Three copies of the record with the pool's test error moved by −0.4 and +0.2 points: the
    per-seed differences and their mean come out as computed here."""
    runs = tmp_path / "runs"
    s = json.loads((SZEGEDY / "summary.json").read_text())
    for seed, shift in ((0, 0.0), (1, -0.004), (2, 0.002)):
        d = runs / f"s{seed}"
        shutil.copytree(SZEGEDY, d)
        for name, edit in (("config.json", lambda c: c["config"].update(seed=seed)),
                           ("manifest.json", lambda m: m.update(seed=seed)),
                           ("summary.json", lambda t: (t.update(seed=seed), t["variants"]["adversarial pool"].update(
                               test_error=round(s["variants"]["adversarial pool"]["test_error"] + shift, 4))))):
            obj = json.loads((d / name).read_text())
            edit(obj)
            (d / name).write_text(json.dumps(obj))
    page = report.seed_sections(report.find_runs([runs]))
    assert page.startswith("### szegedy-adversarial-training across seeds")
    v = s["variants"]
    base = v["adversarial pool"]["test_error"] - v["weight decay only"]["test_error"]
    diffs = [base, base - 0.004, base + 0.002]
    assert f"{100 * sum(diffs) / 3:+.1f} points [" in page
    assert f"(seed 0: {100 * diffs[0]:+.1f}, seed 1: {100 * diffs[1]:+.1f}, seed 2: {100 * diffs[2]:+.1f})" in page
    assert page.count("over 3 seeds") == 5          # three variants, two differences


UNITS = RUNS / "szegedy-units-full"


@pytest.mark.skipif(not UNITS.exists(), reason="needs the archived szegedy-units-full record")
def test_szegedy_units_purity_across_seeds():
    """Three summaries with the units' mean purity moved by −0.10 and −0.05: the rows give each
    mean over seeds and the paired difference with Student's t interval (t₀.₉₇₅,₂ = 4.303), computed
    here by hand, and the verdict follows the interval."""
    from spheres.experiments import szegedy_units

    s = json.loads((UNITS / "summary.json").read_text())
    ss = [dict(s, seed=seed, unit_label_purity_mean=s["unit_label_purity_mean"] + shift)
          for seed, shift in ((0, 0.0), (1, -0.10), (2, -0.05))]
    rows = szegedy_units.seed_rows(ss)
    assert [r.quantity for r in rows] == ["label purity of single units' top images",
                                          "label purity of random directions' top images",
                                          "label purity of random images (chance)",
                                          "units minus random directions, label purity"]
    diffs = [x["unit_label_purity_mean"] - x["random_direction_label_purity_mean"] for x in ss]
    m = sum(diffs) / 3
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)
    assert rows[3].ours.startswith(f"{100 * m:+.1f} points [{math.floor(1000 * (m - half)) / 10:+.1f}, "
                                   f"{math.ceil(1000 * (m + half)) / 10:+.1f}] over 3 seeds")
    told = not (m - half) <= 0 <= (m + half)
    assert ("inconclusive" in rows[3].ours) is not told
    assert rows[0].ours.startswith(f"mean {100 * (s['unit_label_purity_mean'] - 0.05):.1f}% [")
    same = f"{100 * s['random_direction_label_purity_mean']:.1f}%"
    assert rows[1].ours.startswith(f"mean {same} [") and f"seed 2: {same})" in rows[1].ours
    assert all(r.note.startswith(s["dataset"]) for r in rows)


def test_count_over_seeds_cuts_to_the_total_and_rounds_outward():
    from spheres.tables import count_over_seeds

    # 16, 20, 24 of 500: mean 20, s = 4, half-width 4.3027 · 4 / √3 = 9.937 -> [10.0, 30.0]
    assert count_over_seeds([16, 20, 24], [0, 1, 2], 500) == \
        "mean 20.0 of 500 [10.0, 30.0] over 3 seeds (seed 0: 16, seed 1: 20, seed 2: 24)"
    # near the ends the interval is cut to [0, total]
    assert count_over_seeds([0, 2], [0, 1], 500).startswith("mean 1.0 of 500 [0.0, 13.8]")
    assert count_over_seeds([499, 500], [0, 1], 500).startswith("mean 499.5 of 500 [493.1, 500.0]")
    # no spread: the interval is the point, not widened by a rounding step
    assert count_over_seeds([15, 15, 15], [0, 1, 2], 500).startswith("mean 15.0 of 500 [15.0, 15.0]")


def test_pooled_rate_sums_counts_and_takes_the_exact_interval_of_the_sum():
    from spheres.tables import fmt_rate, pooled_rate

    e = lambda k, n: {"errors": k, "n": n}  # noqa: E731
    p = pooled_rate([e(0, 10_000_000)] * 3)
    # none in 3·10⁷: the two-sided 95% upper bound 1 − 0.025^(1/n) ≈ 3.689 / n
    assert p["errors"] == 0 and p["n"] == 30_000_000
    assert p["upper"] == pytest.approx(-math.log(0.025) / 30_000_000, rel=1e-6)
    assert fmt_rate(p) == "0/30,000,000 (≤ 1.2e-07 at 95%)"
    q = pooled_rate([e(3, 1000), e(1, 1000)])
    assert (q["errors"], q["n"], q["rate"]) == (4, 2000, 0.002)
    assert q["lower"] < 0.002 < q["upper"]
