"""attacks._validate, function by function: what each validator accepts at the edge, what it refuses
just past it, and the message (the attacks' own validation tests go through the public functions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attacks import _validate as v


def test_check_inputs_names_the_bad_examples_and_truncates_after_ten():
    x = np.ones((12, 3), np.float32)
    x[[1, 3], 0] = np.nan
    with pytest.raises(ValueError, match=r"in examples \[1, 3\]; attacks need finite"):
        v.check_inputs(x)
    x[:10, 1] = np.inf                                      # exactly 10 bad rows: no ellipsis
    with pytest.raises(ValueError, match=r"\[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]; "):
        v.check_inputs(x)
    x[10, 2] = np.nan                                       # 11: the first 10 and "..."
    with pytest.raises(ValueError, match=r"\[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]\.\.\.; "):
        v.check_inputs(x)
    for bad, msg in ((np.ones(3, np.float32), "batch axis"), (np.ones((2, 3), np.int32), "floating point"),
                     (np.ones((0, 3), np.float32), "empty batch")):
        with pytest.raises(ValueError, match=msg):
            v.check_inputs(bad)


def test_check_label_shape_casts_to_int32_and_refuses_floats():
    y = v.check_label_shape(np.array([True, False]), 2, (2, 3))
    assert y.dtype == np.int32 and y.tolist() == [1, 0]
    assert v.check_label_shape(np.array([3, 4], np.int64), 2, (2, 3)).dtype == np.int32
    same = np.array([1, 2], np.int32)
    assert v.check_label_shape(same, 2, (2, 3)) is same
    with pytest.raises(ValueError, match="integer class labels"):
        v.check_label_shape(np.array([1.0, 2.0]), 2, (2, 3))
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(2,\)"):
        v.check_label_shape(np.array([1, 2, 3]), 2, (2, 3))


def test_check_batch_checks_the_batch_axis_before_the_labels():
    # a 1-d x with a 1-label y: the missing batch axis is the error, not the labels' length
    with pytest.raises(ValueError, match="batch axis"):
        v.check_batch(np.ones(5, np.float32), np.zeros(1, np.int32))
    x, y = v.check_batch([[0.5, 0.25]], [1])                 # Python lists are accepted
    assert isinstance(x, jax.Array) and x.shape == (1, 2) and y.tolist() == [1]


@pytest.mark.parametrize("eps", [[0.0, 0.1], (0.3,), np.array([2.0])])
def test_check_epsilons_accepts(eps):
    assert v.check_epsilons(eps, np.float32).ndim == 1


@pytest.mark.parametrize("eps, msg", [(0.1, "non-empty 1-D"), ([], "non-empty 1-D"), ([[0.1]], "non-empty 1-D"),
                                      ([0.1, -1e-6], "finite and >= 0"), ([-0.5], "finite and >= 0"),
                                      ([np.nan], "finite and >= 0"), (["a"], "sequence of numbers"),
                                      ({"a": 1}, "sequence of numbers")])
def test_check_epsilons_refuses(eps, msg):
    with pytest.raises(ValueError, match=msg):
        v.check_epsilons(eps, np.float32)


def test_check_bounds_refuses_x_outside_by_any_amount():
    x = np.full((2, 3), 0.5, np.float32)
    lo, hi = v.check_bounds((0.0, 1.0), x)
    assert lo.shape == hi.shape == x.shape
    for bounds in ((0.6, 1.0), (0.0, 0.4), (0.51, 1.0)):       # x below lo (by 0.1, 0.01) or above hi
        with pytest.raises(ValueError, match="bounds exclude x"):
            v.check_bounds(bounds, x)
    with pytest.raises(ValueError, match="lo > hi"):
        v.check_bounds((1.0, 0.0), x)


def test_check_key_forms():
    typed, raw = jax.random.key(0), jax.random.PRNGKey(0)
    assert v.check_key(typed, 3)[1] is not None and v.check_key(raw, 3)[0] is None
    per_typed = jax.random.split(typed, 3)
    per_raw = jax.random.split(raw, 3)
    assert v.check_key(per_typed, 3)[0] is not None                # (B,) typed keys
    assert v.check_key(per_raw, 3)[0] is not None                  # (B, 2) raw keys
    for bad in (jnp.zeros((1,), jnp.uint32), jnp.zeros((3,), jnp.uint32), jnp.zeros((2,), jnp.int32),
                jnp.zeros((4, 2), jnp.uint32)):
        with pytest.raises(ValueError, match="key must be"):
            v.check_key(bad, 3)
    with pytest.raises(ValueError, match="one key per example"):
        v.check_key(jax.random.split(typed, 4), 3)
    with pytest.raises(ValueError, match="pass key="):
        v.check_key(None, 3)
