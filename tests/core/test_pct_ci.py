"""`spheres.tables.rate_ci` / `pct_ci`: a rate over n examples with its exact (Clopper–Pearson)
interval, checked against scipy's exact binomial interval, and its compact display."""

import math
import re

import numpy as np
import pytest
from scipy.stats import binomtest

from spheres.tables import ci_note, pct_ci, rate_ci

CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (0, 1000), (1, 1000), (123, 1000), (999, 1000),
         (1000, 1000), (7781, 60_000), (0, 10_000), (9953, 10_000), (9999, 10_000), (10_000, 10_000),
         (6042, 9953), (16, 500)]


@pytest.mark.parametrize("k,n", CASES)
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_rate_ci_is_scipys_exact_interval(k, n, confidence):
    got_k, lo, hi = rate_ci(k / n, n, confidence)
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert got_k == k
    assert abs(lo - ref.low) <= 1e-12 and abs(hi - ref.high) <= 1e-12, (lo, hi, ref)


def test_rate_ci_takes_rates_as_summaries_store_them():
    """Summaries hold ``k / n`` as a float (7781 / 60000 = 0.12968333333333334); numpy scalars too."""
    assert rate_ci(0.12968333333333334, 60_000)[0] == 7781
    assert rate_ci(np.float32(0.25), np.int64(4))[0] == 1
    assert rate_ci(0.1587, 10_000.0)[0] == 1587


_NUM = re.compile(r"[0-9.]+")


def _shown(s: str) -> list[float]:
    return [float(x) for x in _NUM.findall(s)]


@pytest.mark.parametrize("k,n", [c for c in CASES if 0 < c[0] < c[1]])
def test_pct_ci_shows_the_rate_and_an_interval_rounded_outward(k, n):
    """``12.3% [10.3, 14.5]``: the shown bounds contain the exact interval and are its bounds
    rounded outward at the shown precision; the shown rate is the count's rate."""
    s = pct_ci(k / n, n)
    m = re.fullmatch(r"([0-9.]+)% \[([0-9.]+), ([0-9.]+)\]", s)
    assert m, s
    rate, lo_s, hi_s = (float(x) for x in m.groups())
    _, lo, hi = rate_ci(k / n, n)
    decimals = [len(x.split(".")[1]) for x in m.groups()]
    assert abs(rate - 100 * k / n) <= 0.5 * 10 ** -decimals[0] + 1e-12
    assert rate not in (0.0, 100.0), s         # a count that is neither none nor all never reads 0% / 100%
    assert lo_s <= 100 * lo + 1e-9 and hi_s >= 100 * hi - 1e-9, (s, lo, hi)
    # outward by less than two units of the last shown digit (one, but for a dropped trailing zero)
    assert 100 * lo - lo_s < 2 * 10 ** -decimals[1] and hi_s - 100 * hi < 2 * 10 ** -decimals[2], s


def test_pct_ci_examples():
    assert pct_ci(0.123, 1000) == "12.3% [10.3, 14.5]"
    assert pct_ci(0.1587, 10_000) == "15.9% [15.1, 16.7]"
    assert pct_ci(0.9999, 10_000) == "99.99% [99.944, 99.99975]"   # not "100.0%": one image was right
    assert pct_ci(0.001, 2000) == "0.1% [0.012, 0.37]"


@pytest.mark.parametrize("n", [1, 10, 1000, 2000, 10_000, 60_000, 10 ** 6])
def test_a_zero_count_shows_its_upper_bound_and_a_full_one_its_lower_bound(n):
    """0 of n: ``0.0% (≤ u)`` with u = 1 − 0.025^(1/n) rounded up (0 in 1,000: 0.37%); n of n:
    ``100.0% (≥ l)``, l = 0.025^(1/n) rounded down."""
    zero, full = pct_ci(0.0, n), pct_ci(1.0, n)
    assert zero.startswith("0.0% (≤ ") and zero.endswith("%)")
    assert full.startswith("100.0% (≥ ") and full.endswith("%)")
    upper = -math.expm1(math.log(0.025) / n)
    (u,) = _shown(zero.split("≤")[1])
    (lo,) = _shown(full.split("≥")[1])
    assert upper * 100 <= u < upper * 100 * 1.1, (zero, upper)
    assert 100 - upper * 100 * 1.1 < lo <= 100 - upper * 100, (full, upper)
    assert pct_ci(0.0, 1000) == "0.0% (≤ 0.37%)" and pct_ci(0.0, 10_000) == "0.0% (≤ 0.037%)"
    assert pct_ci(1.0, 1000) == "100.0% (≥ 99.63%)"


def test_an_unmeasured_rate_shows_a_dash():
    """None, or NaN (a rate over no examples, e.g. maxout made no mistakes to agree with)."""
    assert pct_ci(None, 100) == "-" and pct_ci(float("nan"), 0) == "-" and pct_ci(np.nan, 10) == "-"


@pytest.mark.parametrize("n", [0, -5, 2.5, None, True, "1000", float("inf"), float("nan")])
def test_bad_n_is_refused(n):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        pct_ci(0.5, n)


@pytest.mark.parametrize("rate,n", [(0.1234, 1000), (0.5, 3), (0.1587, 1000 + 1), (1 / 3, 10)])
def test_a_rate_that_is_not_a_count_over_n_means_the_wrong_n(rate, n):
    with pytest.raises(ValueError, match="not a count over n"):
        pct_ci(rate, n)


@pytest.mark.parametrize("rate", [-0.01, 1.01, float("inf")])
def test_a_rate_outside_0_1_is_refused(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        pct_ci(rate, 100)


def test_bad_confidence_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        pct_ci(0.5, 10, confidence=1.0)


def test_the_note_names_the_interval():
    assert "95% (Clopper–Pearson)" in ci_note() and "99%" in ci_note(0.99)


def test_rate_difference_text_gives_the_interval_outward_and_the_verdict():
    from spheres.tables import rate_difference
    from theory.binomial import difference_interval

    # 1070 vs 1150 errors in 10,000: -0.8 points, interval over 0 → inconclusive at one seed
    text = rate_difference(0.107, 10_000, 0.115, 10_000)
    d, lo, hi = difference_interval(1070, 10_000, 1150, 10_000)
    shown = [float(x) for x in re.findall(r"[-+]\d+\.\d", text)]
    assert shown[0] == pytest.approx(100 * d, abs=0.05)
    assert shown[1] <= 100 * lo and shown[2] >= 100 * hi                       # rounded outward
    assert shown[1] > 100 * lo - 0.1 and shown[2] < 100 * hi + 0.1
    assert "not told apart at 95% (one seed): inconclusive" in text
    # 500 vs 1150 in 10,000: told apart, and a single seed says so
    assert "lower at 95% over the test draw (one seed; training-to-training spread not measured)" in \
        rate_difference(0.05, 10_000, 0.115, 10_000)
    assert "higher at 95% over the test draw (3 seeds)" in rate_difference(0.2, 1000, 0.1, 1000, seeds=3)
    with pytest.raises(ValueError):
        rate_difference(0.1234, 100, 0.1, 100)                                # not a count over n


@pytest.mark.parametrize("n", [999, 1000, 10_000, 60_000, 1_000_000])
def test_rate_ci_recovers_counts_from_float32_rates(n):
    """Image rates are means of float32 arrays, stored as the float32 value (0.161 over 1,000 is
    0.16099999845027924, 161 − 1.5e-6 counts; 381/999 is 381 + 1.1e-5): every count comes back."""
    ks = np.unique(np.linspace(0, n, 2001).astype(np.int64))
    for k in ks:
        for rate in (float(np.float32(k) / np.float32(n)),
                     float(np.mean(np.arange(n) < k, dtype=np.float32))):
            assert rate_ci(rate, n)[0] == k, (k, n, rate)
    assert rate_ci(0.16099999845027924, 1000)[0] == 161 and rate_ci(0.38138139247894287, 999)[0] == 381
    with pytest.raises(ValueError, match="not a count over n"):
        rate_ci(0.1615, 1000)                                   # half a count off: the wrong n
