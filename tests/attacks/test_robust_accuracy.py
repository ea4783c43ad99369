"""`attacks.robust_accuracy`: the same counts as a hand-written loop, exact Clopper–Pearson
intervals, independent of the batch size, and its table and figure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
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
    assert "attack=apgd, norm=l2, n=20 (95% Clopper-Pearson intervals)" in table
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


class _Fixed:
    """A 4-class linear model whose wrong predictions fall both above and below the labels."""

    W = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])

    @staticmethod
    def fn(v):
        return _Fixed.W @ v


def test_clean_count_is_exact_when_mistakes_fall_above_and_below_the_label():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.1]], np.float32)
    y = np.array([0, 2, 1, 3, 0])            # predictions 0, 1, 2, 3, 0: right, below, above, right, right
    report = attacks.robust_accuracy(_Fixed.fn, x, y, epsilons=[0.0], attack="fgsm", batch_size=2,
                                     progress=False)
    assert report.clean_count == 3 and report.robust_count.tolist() == [3]


def test_inputs_are_checked_and_images_and_single_examples_accepted():
    f = _Fixed.fn
    x, y = np.ones((4, 2), np.float32), np.zeros(4, int)
    for xb, yb in ((x[0], y[:1]), (x[:, 0], y), (x, y[:3]), (x, np.zeros(5, int)), (x, y[:, None]),
                   (x[:0], y[:0])):
        with pytest.raises(ValueError, match="needs x \\(n, \\*input_shape\\) and y \\(n,\\)"):
            attacks.robust_accuracy(f, xb, yb, epsilons=[0.1], attack="fgsm", progress=False)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            attacks.robust_accuracy(f, x, y, epsilons=[0.1], attack="fgsm", batch_size=bad, progress=False)
    one = attacks.robust_accuracy(f, x[:1], y[:1], epsilons=[0.1], attack="fgsm", batch_size=1, progress=False)
    assert one.count == 1 and one.clean_count == 1
    img = lambda v: jnp.stack([jnp.sum(v), -jnp.sum(v)])                       # noqa: E731
    xi = np.full((3, 2, 2, 1), 0.5, np.float32)
    assert attacks.robust_accuracy(img, xi, np.zeros(3, int), epsilons=[0.01], attack="fgsm",
                                   progress=False).clean_count == 3


def test_budgets_keep_float64_and_progress_counts_every_example(capsys):
    with jax.enable_x64(True):
        x = np.ones((5, 2)) * np.array([1.0, 0.0])
        report = attacks.robust_accuracy(_Fixed.fn, x, np.zeros(5, int), epsilons=[0.1, 0.2], attack="fgsm",
                                         batch_size=2)                        # progress on by default
    assert report.epsilons.dtype == np.float64
    err = capsys.readouterr().err
    assert "fgsm linf" in err and "5/5" in err and "6/5" not in err


def test_figure_band_is_the_interval_on_a_unit_axis():
    model, x, y = setup()
    report = attacks.robust_accuracy(model, x[:16], y[:16], epsilons=[0.3, 0.1], attack="fgsm", progress=False)
    (ax,) = report.figure().axes
    assert ax.get_ylim() == (0.0, 1.0)
    band = ax.collections[0]
    assert band.get_label() == "95% Clopper-Pearson"
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    lo, hi = report.interval[np.argsort(report.epsilons)].T
    assert np.isclose(ys.min(), lo.min()) and np.isclose(ys.max(), hi.max())
    assert set(np.round(ys, 12)) <= set(np.round(np.concatenate([lo, hi]), 12))
