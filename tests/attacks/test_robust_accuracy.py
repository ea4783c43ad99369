"""`attacks.robust_accuracy`: the same counts as a hand-written loop, exact Clopper–Pearson
intervals, independent of the batch size, and its table and figure."""

from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np
import pytest
import scipy.stats
from _attack_models import mlp_apply, trained_mlp

import attacks

KEY = jax.random.key(5)
EPSILONS = [0.1, 0.3, 0.6]


def setup():
    p, x, y = trained_mlp()
    return attacks.Model(mlp_apply, params=p), np.asarray(x), np.asarray(y)


def hand_loop(model, x, y, batch, attack=attacks.pgd, **kw):
    """Robust = correct and not broken, counted batch by batch; example i uses split(KEY, n)[i]."""
    keys = jax.random.split(KEY, len(x))
    robust, clean = np.zeros(len(EPSILONS), int), 0
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        res = attack(model, xb, yb, epsilons=EPSILONS, key=keys[s:s + batch], **kw)
        correct = np.asarray(attacks.predict(model, xb)) == yb
        robust += (correct[None] & ~np.asarray(res.success)).sum(axis=1)
        clean += int(correct.sum())
    return robust, clean


def test_accuracies_equal_a_hand_loop_and_do_not_depend_on_batch_size():
    model, x, y = setup()
    report = attacks.robust_accuracy(model, x, y, epsilons=EPSILONS, attack="pgd", num_steps=5,
                                     batch_size=24, key=KEY, progress=False)   # 64 = 24 + 24 + 16
    robust, clean = hand_loop(model, x, y, 24, num_steps=5)
    np.testing.assert_array_equal(report.robust_count, robust)
    assert report.clean_count == clean and report.count == len(x)
    np.testing.assert_array_equal(report.accuracy, robust / len(x))
    assert report.clean_accuracy == clean / len(x)
    assert 0 < robust[-1] < robust[0] <= clean       # budgets that separate points
    whole = attacks.robust_accuracy(model, x, y, epsilons=EPSILONS, attack="pgd", num_steps=5,
                                    batch_size=64, key=KEY, progress=False)
    # Per-example keys: the same attack on every example whatever the batching.
    np.testing.assert_array_equal(whole.robust_count, report.robust_count)


def test_interval_is_the_exact_clopper_pearson_interval():
    model, x, y = setup()
    report = attacks.robust_accuracy(model, x, y, epsilons=EPSILONS, attack="fgsm", batch_size=32,
                                     progress=False)
    n = report.count
    for k, (lo, hi) in zip(list(report.robust_count) + [report.clean_count],
                           list(report.interval) + [report.clean_interval]):
        # Clopper & Pearson (1934) by the beta quantiles, independently of scipy's binomtest.
        exact_lo = 0.0 if k == 0 else scipy.stats.beta.ppf(0.025, k, n - k + 1)
        exact_hi = 1.0 if k == n else scipy.stats.beta.ppf(0.975, k + 1, n - k)
        # Both are root-finds of the same beta CDF: agreement to 1e-9.
        np.testing.assert_allclose([lo, hi], [exact_lo, exact_hi], rtol=1e-9, atol=1e-12)
        assert lo <= k / n <= hi


def test_apgd_default_table_and_figure():
    model, x, y = setup()
    report = attacks.robust_accuracy(model, x[:20], y[:20], epsilons=EPSILONS, norm="l2",
                                     num_steps=5, key=KEY, progress=True)
    robust, _ = hand_loop(model, x[:20], y[:20], 20, attack=attacks.apgd, num_steps=5, norm="l2")
    np.testing.assert_array_equal(report.robust_count, robust)
    table = report.table()
    assert "attack=apgd, norm=l2, n=20" in table and "95% Clopper-Pearson" in table
    assert len(table.splitlines()) == 2 + 1 + len(EPSILONS)
    fig = report.figure()
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), report.accuracy)


@pytest.mark.parametrize("kwargs, message", [
    ({"attack": "cw"}, "attack='cw'"),
    ({"attack": "pgd"}, "pass key="),
    ({"attack": "fgsm", "eps": 0.1}, "sets the attack's eps="),
    ({"attack": "fgsm", "epsilons": []}, "non-empty"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    model, x, y = setup()
    kwargs = {"epsilons": EPSILONS, **kwargs}
    with pytest.raises(ValueError, match=message):
        attacks.robust_accuracy(model, x, y, progress=False, **kwargs)
