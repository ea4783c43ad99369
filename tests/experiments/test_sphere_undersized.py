"""Quick preset of ``sphere-quadratic-undersized`` (Gilmer §4): a quadratic net with h = d/2 has
exactly d − h zero α, and its exact error rate agrees with the measured one."""

import jax
import numpy as np
import pytest

from spheres.experiments import make_config, run_experiment
from spheres.experiments._sphere import final_state
from spheres.results import RunDir
from spheres.sphere.quadratic import alpha_spectrum


@pytest.fixture(scope="module")
def undersized(tmp_path_factory):
    out = tmp_path_factory.mktemp("undersized")
    return run_experiment("sphere-quadratic-undersized", out, progress=False), out


def test_exactly_d_minus_h_alphas_are_zero(undersized):
    """Zero means |α| ≤ 1e-9 · max α (`ZERO_ALPHA_RTOL`); checked independently by an eigen-
    decomposition of (w/−b)·WᵀW in float64, whose null space comes out at ≲ 1e-14 · max while
    the h non-zero eigenvalues stay above 1e-6 · max."""
    s, out = undersized
    d, h = s["d"], s["hidden"]
    assert (d, h) == (40, 20)
    assert s["spectrum"]["alpha_zero"] == d - h and s["spectrum"]["alpha_nonzero"] == h
    cfg = make_config("sphere-quadratic-undersized", "quick")
    p = jax.device_get(final_state(cfg, RunDir.open(out, "sphere-quadratic-undersized", cfg)).params)
    W, w, b = (np.asarray(p[k], np.float64) for k in ("W", "w", "b"))
    lam = np.linalg.eigvalsh((w / -b) * W.T @ W)
    top = np.abs(lam).max()
    assert (np.abs(lam) <= 1e-9 * top).sum() == d - h
    assert np.sort(np.abs(lam))[d - h] > 1e-6 * top
    nz = np.sort(lam)[d - h:]
    np.testing.assert_allclose([nz[0], np.median(nz), nz[-1]], [s["spectrum"][f"alpha_nonzero_{k}"] for k in
                               ("min", "median", "max")], rtol=1e-9)
    sp = alpha_spectrum(np.sort(lam), cfg.R)
    assert sp["alpha_zero"] == d - h


def test_exact_rate_lies_in_the_measured_interval(undersized):
    """Final (200,000 points per sphere) and during training (50,000): the exact rate of the α
    spectrum inside the measured rate's exact 95 % interval (fixed seeds: deterministic)."""
    from theory.binomial import clopper_pearson

    s, _ = undersized
    for sphere in ("inner", "outer"):
        e = s["error_rate"][sphere]
        exact = 10 ** s["theory"][f"log10_exact_{sphere}"]
        assert e["errors"] > 100                    # an undersized net errs measurably at d = 40
        assert e["lower"] <= exact <= e["upper"]
    assert len(s["trajectory"]) >= 2
    for m in s["trajectory"]:
        assert m["alpha_zero"] == s["d"] - s["hidden"]
        for sphere in ("inner", "outer"):
            lo, hi = clopper_pearson(m[f"measured_{sphere}_errors"], m[f"measured_{sphere}_n"], 0.95)
            assert lo <= 10 ** m[f"log10_exact_{sphere}"] <= hi, (m["step"], sphere)


def test_undersized_table_and_paper_rows(undersized):
    from spheres.experiments import get

    s, _ = undersized
    exp = get("sphere-quadratic-undersized")
    text = exp.table(s).text()
    assert "zero α" in text and "20 of 40" in text and "measured inner" in text
    rows = exp.paper_rows(s)
    assert any("10⁻²¹" in r.value.value for r in rows) and any("10⁻⁹" in r.value.value for r in rows)
    # the CLT rows also give the rates at the tracked step whose larger CLT rate is lowest
    from spheres.tables import fmt_log10
    worst = [max(m["log10_clt_inner"], m["log10_clt_outer"]) for m in s["trajectory"]]
    best = s["trajectory"][int(np.argmin(worst))]
    for sphere in ("inner", "outer"):
        row = next(r for r in rows if r.quantity.startswith(f"error rate, {sphere} sphere"))
        assert f"at the best tracked step, {best['step']:,} " in row.note
        assert f"CLT {fmt_log10(best[f'log10_clt_{sphere}'])}, exact {fmt_log10(best[f'log10_exact_{sphere}'])}" in row.note
