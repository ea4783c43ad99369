"""Evaluate adversarial examples on other models: the building block of Szegedy et al.'s Tables
2–4 (cross-model and cross-training-set generalisation) and Goodfellow et al.'s transfer and
cross-model agreement numbers (§8).

``error rate of model m = mean_i [pred_m(x_adv_i) ≠ y_i]`` over the examples selected by
``mask`` (all by default); targeted: ``mean_i [pred_m(x_adv_i) = t_i]``.  Predictions are made by
one jitted, vmapped call per model (chunked by ``batch_size`` so memory stays flat; chunks are
padded to a fixed size so there is one compilation per model and shape).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax.numpy as jnp

from attacks import _model, _validate
from attacks._base import predict_batch


class TransferResult(NamedTuple):
    """Per model name: ``error_rate`` (scalar), ``errors`` ``(B,)`` bool, ``predictions`` ``(B,)``."""

    error_rate: dict
    errors: dict
    predictions: dict


def predict(logit_fn: Callable, x, *, params: Any = None, batch_size: int | None = None):
    """Predicted classes ``(B,)`` int32 of a model (an `attacks.Model`, a per-example
    ``logit_fn``, or ``logit_fn(params, x)`` with ``params=``) on a batch ``x (B, ...)``: argmax,
    or ``logit > 0`` for a binary model."""
    model = _model.resolve(logit_fn, params)
    logit_fn, params = model.fn, model.params
    x = jnp.asarray(x)
    if batch_size is not None:
        batch_size = _validate.check_int(batch_size, "batch_size", minimum=1)
    if batch_size is None or batch_size >= x.shape[0]:
        return predict_batch(logit_fn, params, x)
    out = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start:start + batch_size]
        n = chunk.shape[0]
        if n < batch_size:   # pad: same shape every chunk, one compilation
            chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], batch_size - n, axis=0)])
        out.append(predict_batch(logit_fn, params, chunk)[:n])
    return jnp.concatenate(out)


def transfer_error_rates(x_adv, y, logit_fns: Mapping[str, Callable], *,
                         params: Mapping[str, Any] | None = None, targeted: bool = False,
                         mask=None, batch_size: int | None = None) -> TransferResult:
    """Error rate of each model in ``logit_fns`` on the same adversarial examples.

    Args:
      x_adv: ``(B, *input_shape)`` adversarial examples (e.g. ``AttackResult.x_adv`` of a source
        model, or Gaussian-noise controls).
      y: ``(B,)`` true labels (or targets if ``targeted``).
      logit_fns: ``{name: model}``: `attacks.Model` or per-example logit_fn.
      params: optional ``{name: params}``; models named there are called as ``fn(params, x)``.
      targeted: count ``pred == y`` (target hit rate) instead of ``pred != y``.
      mask: optional ``(B,)`` bool: which examples to count (e.g. the source attack's
        ``success``); ``errors``/``predictions`` still cover all B. A mask that selects no example
        gives a rate of 0 (over 0 examples), not NaN.
      batch_size: evaluate in chunks of this size.

    Returns:
      `TransferResult` of dicts keyed by model name.  Cross-model agreement (Goodfellow §8) is
      ``mean(predictions[a] == predictions[b])`` over the rows of interest.

    Example::

        res = attacks.transfer_error_rates(adv.x_adv, y, {"fc10": f1, "fc100": f2})
        res.error_rate["fc100"]
    """
    x_adv, y = _validate.check_batch(x_adv, y)
    if not isinstance(logit_fns, Mapping) or not logit_fns:
        raise ValueError("logit_fns must be a non-empty mapping {name: logit_fn}.")
    params = dict(params or {})
    unknown = set(params) - set(logit_fns)
    if unknown:
        raise ValueError(f"params given for unknown models {sorted(unknown)}; known: {sorted(logit_fns)}.")
    if mask is None:
        weight = jnp.ones(y.shape, jnp.float32)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != y.shape:
            raise ValueError(f"mask must have shape (B,) = {y.shape}, got {mask.shape}.")
        weight = mask.astype(jnp.float32)
    rates, errors, preds = {}, {}, {}
    for name, fn in logit_fns.items():
        model = _model.resolve(fn, params.get(name))
        _validate.check_model_and_labels(model, x_adv, y)
        pred = predict(fn, x_adv, params=params.get(name), batch_size=batch_size)
        err = pred == y if targeted else pred != y
        preds[name], errors[name] = pred, err
        rates[name] = jnp.sum(err * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    return TransferResult(error_rate=rates, errors=errors, predictions=preds)
