"""Robust accuracy of a model at several budgets, streamed over a dataset, with exact intervals.

An example counts as robust at ε when the model classifies it correctly AND the attack at ε
fails on it:

    robust accuracy(ε) = (1/n) Σᵢ [pred(xᵢ) = yᵢ] · [attack at ε fails on (xᵢ, yᵢ)]

The dataset is read in batches of ``batch_size`` (the last one padded to the same shape, so the
attack compiles once); each batch runs the attack ONCE for all budgets (``epsilons=``), and
example i of the whole dataset is attacked with key ``jax.random.split(key, n)[i]``, so the
numbers do not depend on ``batch_size``.  The interval for k robust out of n is the exact
Clopper–Pearson interval (Clopper & Pearson 1934) from ``scipy.stats.binomtest``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attacks import _validate
from attacks.apgd import apgd
from attacks.fgsm import fgsm
from attacks.pgd import pgd
from attacks.transfer import predict
from theory.binomial import clopper_pearson

ATTACKS = {"apgd": apgd, "pgd": pgd, "fgsm": fgsm}
CONFIDENCE = 0.95


class RobustAccuracyResult(NamedTuple):
    """`robust_accuracy`'s outcome; arrays are NumPy, one entry per budget.

    Attributes:
      epsilons: ``(E,)`` budgets, in the order given.
      accuracy: ``(E,)`` robust accuracy ``robust_count / count``.
      robust_count: ``(E,)`` int, examples correct and not broken at ε.
      count: n, examples evaluated.
      interval: ``(E, 2)`` exact Clopper–Pearson interval of each accuracy at ``confidence``.
      clean_accuracy, clean_count, clean_interval: the same without attack.
      norm, attack, confidence: the settings.
    """

    epsilons: np.ndarray
    accuracy: np.ndarray
    robust_count: np.ndarray
    count: int
    interval: np.ndarray
    clean_accuracy: float
    clean_count: int
    clean_interval: tuple
    norm: str
    attack: str
    confidence: float = CONFIDENCE

    def table(self) -> str:
        """A plain-text table: one row for the clean model, one per budget."""
        pct = f"{100 * self.confidence:g}%"
        lines = [f"robust accuracy: attack={self.attack}, norm={self.norm}, n={self.count} "
                 f"({pct} Clopper-Pearson intervals)",
                 f"{'eps':>10s} {'robust':>8s} {'accuracy':>9s}  {pct + ' interval':>20s}"]
        rows = [("clean", self.clean_count, self.clean_accuracy, self.clean_interval)]
        rows += [(f"{e:.4g}", k, a, tuple(ci)) for e, k, a, ci in
                 zip(self.epsilons, self.robust_count, self.accuracy, self.interval)]
        for name, k, acc, (lo, hi) in rows:
            lines.append(f"{name:>10s} {int(k):8d} {acc:9.4f}  [{lo:.4f}, {hi:.4f}]")
        return "\n".join(lines)

    def figure(self):
        """Robust accuracy against ε with its interval band, the clean accuracy as a dashed line.
        Returns a ``matplotlib.figure.Figure`` (no pyplot: the caller chooses the backend)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.0, 3.5), layout="constrained")
        ax = fig.add_subplot()
        order = np.argsort(self.epsilons)
        eps = self.epsilons[order]
        ax.plot(eps, self.accuracy[order], marker="o", label=f"{self.attack} ({self.norm})")
        ax.fill_between(eps, self.interval[order, 0], self.interval[order, 1], alpha=0.25,
                        label=f"{100 * self.confidence:g}% Clopper-Pearson")
        ax.axhline(self.clean_accuracy, color="gray", linestyle="--", label="clean")
        ax.set(xlabel=f"ε ({self.norm})", ylabel="robust accuracy", ylim=(0.0, 1.0),
               title=f"n = {self.count}")
        ax.legend(loc="best", fontsize="small")
        return fig


def _key_rows(key, n: int):
    """``(rows (n, ...) NumPy, wrap)``: one key per example, sliceable on the host."""
    keys = jax.random.split(key, n)
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(keys)
        return np.asarray(jax.random.key_data(keys)), lambda rows: jax.random.wrap_key_data(rows, impl=impl)
    return np.asarray(keys), jnp.asarray


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)])


def robust_accuracy(model, x, y, *, norm="linf", epsilons, attack="apgd", batch_size=256, key=None,
                    progress=True, **attack_kwargs) -> RobustAccuracyResult:
    """Accuracy under attack at each budget in ``epsilons``, over a whole dataset.

    Args:
      model: an `attacks.Model` or any model an attack accepts (with ``params=`` in
        ``attack_kwargs`` for ``f(params, x)``).
      x: ``(n, *input_shape)``, y: ``(n,)`` true labels; NumPy arrays (or memmaps) are read one
        batch at a time on the host.
      norm: ``"linf"`` or ``"l2"``.  epsilons: the budgets (E,).
      attack: ``"apgd"`` (default settings of `attacks.apgd`: 100 steps, cross-entropy),
        ``"pgd"`` or ``"fgsm"``.  attack_kwargs: passed to the attack (``num_steps``, ``loss``,
        ``bounds``, ``params``, ...).
      batch_size: examples per attack call.  key: PRNG key (not needed for FGSM); example i
        uses ``jax.random.split(key, n)[i]``.
      progress: show a tqdm progress bar.

    Returns:
      `RobustAccuracyResult` (``.table()``, ``.figure()``).

    Example::

        report = attacks.robust_accuracy(model, x_test, y_test, epsilons=[1/255, 4/255, 8/255],
                                         key=jax.random.key(0))
        print(report.table())
    """
    from tqdm.auto import tqdm

    _validate.check_choice(attack, "attack", tuple(ATTACKS))
    _validate.check_choice(norm, "norm", ("linf", "l2"))
    batch_size = _validate.check_int(batch_size, "batch_size", minimum=1)
    for name in ("eps", "epsilons", "key", "norm"):
        if name in attack_kwargs:
            raise ValueError(f"robust_accuracy sets the attack's {name}= itself; do not pass it in "
                             "attack_kwargs.")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"robust_accuracy needs x (n, *input_shape) and y (n,) with n >= 1; got "
                         f"{x.shape} and {y.shape}.")
    n = x.shape[0]
    eps = _validate.check_epsilons(epsilons, x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    run = ATTACKS[attack]
    keyed = attack != "fgsm" and attack_kwargs.get("random_start", True)
    if keyed:
        if key is None:
            raise ValueError(f"attack={attack!r} draws random starts: pass key=jax.random.key(seed).")
        key_rows, wrap = _key_rows(key, n)
    size = min(batch_size, n)
    params = attack_kwargs.get("params")
    robust = jnp.zeros(len(eps), jnp.int32)
    clean = jnp.zeros((), jnp.int32)
    with tqdm(total=n, desc=f"{attack} {norm}", unit="ex", disable=not progress) as bar:
        for start in range(0, n, size):
            stop = min(start + size, n)
            xb, yb = _pad(x[start:stop], size), _pad(y[start:stop], size)
            extra = {"key": wrap(_pad(key_rows[start:stop], size))} if keyed else {}
            res = run(model, xb, yb, epsilons=eps, norm=norm, **extra, **attack_kwargs)
            valid = jnp.arange(size) < stop - start
            correct = (predict(model, xb, params=params) == yb) & valid
            robust = robust + jnp.sum(correct[None] & ~res.success, axis=1, dtype=jnp.int32)
            clean = clean + jnp.sum(correct, dtype=jnp.int32)
            bar.update(stop - start)
    robust, clean = np.asarray(robust), int(clean)
    return RobustAccuracyResult(
        epsilons=np.asarray(eps), accuracy=robust / n, robust_count=robust, count=n,
        interval=np.array([clopper_pearson(k, n) for k in robust]).reshape(len(eps), 2),
        clean_accuracy=clean / n, clean_count=clean, clean_interval=clopper_pearson(clean, n),
        norm=norm, attack=attack)
