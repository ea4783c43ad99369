"""Evaluation of image models: logits in fixed-size chunks, error rate and confidence.

`predict_logits` runs a model's jitted eval-mode function (`models.logit_fns`) over ``x`` in
chunks of one size, padding the last one, so a model compiles once whatever the number of
examples. `evaluate` turns the logits into an `Evaluation` (error, confidence, per-example
predictions) on the host. Confidence is the probability the model gives its predicted class:
softmax for the softmax models, ``exp(score)`` for the RBF network (whose classes are
independent), ``σ(z)`` / ``1 − σ(z)`` for logistic regression (`probabilities`).

Example::

    ev = evaluate(recipe.module, variables, ds.x_test, ds.y_test)
    ev.error, ev.confidence_on_mistakes
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from theory._common import is_int

from ..sphere.evaluate import NonFiniteOutputError, nonfinite_message
from . import models as im


def predict_logits(model, variables, x, *, batch: int = 1000) -> np.ndarray:
    """Eval-mode outputs for ``x (N, ...)`` in fixed-size chunks (one compilation per model)."""
    f = im.logit_fns(model).batched
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    if n == 0:
        raise ValueError("predict_logits: empty input")
    return np.concatenate([np.asarray(f(variables, chunk))[:k] for chunk, k in padded_chunks(x, min(batch, n))])


def padded_chunks(x: np.ndarray, batch: int):
    """``(chunk, k)``: ``x`` in chunks of ``batch`` rows, the last padded by repeating its final row,
    with the number ``k`` of real rows (one shape, so a jitted function compiles once)."""
    if not is_int(batch):
        raise ValueError(f"padded_chunks: batch must be an int >= 1, got {batch!r}")
    for s in range(0, x.shape[0], batch):
        chunk = x[s:s + batch]
        k = chunk.shape[0]
        if k < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - k, axis=0)])
        yield chunk, k


class Evaluation(NamedTuple):
    """``error`` rate, ``mean_confidence`` (probability of the predicted class, averaged over all
    examples), ``confidence_on_mistakes`` (averaged over the misclassified ones; NaN if none), and
    per-example ``predictions`` and ``confidence``."""

    error: float
    mean_confidence: float
    confidence_on_mistakes: float
    predictions: np.ndarray
    confidence: np.ndarray

    def as_dict(self) -> dict:
        return {"error": self.error, "mean_confidence": self.mean_confidence,
                "confidence_on_mistakes": self.confidence_on_mistakes, "n": int(self.predictions.size)}


def evaluate(model, variables, x, y, *, batch: int = 1000, nonfinite: str = "error") -> Evaluation:
    """Error rate and confidence of ``model`` on ``x``, ``y`` (see `Evaluation`; ``nonfinite`` as
    in `evaluation_from_logits`)."""
    logits = predict_logits(model, variables, x, batch=batch)
    return evaluation_from_logits(model, logits, y, nonfinite=nonfinite)


def predictions(model, variables, x) -> np.ndarray:
    """The classes ``model`` predicts for ``x (N, ...)``, ``(N,)`` int32."""
    return evaluate(model, variables, x, np.zeros(x.shape[0], np.int32)).predictions


def probabilities(model, logits: np.ndarray) -> np.ndarray:
    """`models.class_probabilities` in NumPy float64 (host-side evaluation, no device dispatch)."""
    logits = np.asarray(logits, np.float64)
    if isinstance(model, im.RBFNetwork):
        return np.exp(logits)
    if isinstance(model, im.LogisticRegression):
        p1 = 1.0 / (1.0 + np.exp(-logits))
        return np.stack([1.0 - p1, p1], axis=-1)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def evaluation_from_logits(model, logits: np.ndarray, y, *, nonfinite: str = "error") -> Evaluation:
    """The `Evaluation` of ``model``'s ``logits (N, 10)`` (or ``(N,)`` for a binary logit) against
    labels ``y (N,)``; predictions are the argmax (``z > 0`` for a binary logit).

    An example with any non-finite logit is never read as a class: ``nonfinite="error"`` (default)
    raises `NonFiniteOutputError` saying how many of how many; ``"count"`` counts it as an error
    (prediction -1, confidence NaN)."""
    if nonfinite not in ("error", "count"):
        raise ValueError(f"nonfinite must be 'error' or 'count', got {nonfinite!r}")
    logits = np.asarray(logits)
    bad = ~np.isfinite(logits) if logits.ndim == 1 else ~np.isfinite(logits).all(axis=-1)
    if bad.any() and nonfinite == "error":
        raise NonFiniteOutputError(nonfinite_message("image evaluation", int(bad.sum()), bad.size))
    with np.errstate(all="ignore"):
        probs = probabilities(model, logits)
    pred = (logits > 0).astype(np.int32) if logits.ndim == 1 else np.argmax(logits, axis=-1).astype(np.int32)
    conf = np.take_along_axis(probs, pred[:, None], axis=1)[:, 0]
    pred = np.where(bad, -1, pred).astype(np.int32)
    conf = np.where(bad, np.nan, conf)
    wrong = pred != np.asarray(y)
    ok = ~bad
    return Evaluation(float(wrong.mean()), float(conf[ok].mean()) if ok.any() else float("nan"),
                      float(conf[wrong & ok].mean()) if (wrong & ok).any() else float("nan"), pred, conf)


def label_purity(labels: np.ndarray, num_classes: int = im.NUM_CLASSES) -> float:
    """Fraction of ``labels`` equal to their most common value (1 for a set of one class)."""
    return float(np.bincount(labels, minlength=num_classes).max() / labels.size)
