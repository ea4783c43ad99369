"""Bad inputs raise a clear ValueError at the public boundary, before anything is compiled.

``logit_fn`` counts its calls: input checks that need no model must not call it at all; the
label-range check evaluates its output shape once (``jax.eval_shape``) and nothing else.  No
attack program may be compiled for a rejected call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks import _base


class Counting:
    def __init__(self, k=None):
        self.calls, self.k = 0, k

    def __call__(self, x):
        self.calls += 1
        s = jnp.sum(x)
        return s if self.k is None else s * jnp.arange(self.k, dtype=x.dtype)


X = np.full((4, 3), 0.5, np.float32)
Y = np.array([0, 1, 0, 1], np.int32)
KEY = jax.random.key(0)

# (name, call(f, x, y), message fragment); every call is otherwise valid.
NO_MODEL_NEEDED = [
    ("batch_mismatch", lambda f: attacks.fgsm(f, X, Y[:3], eps=0.1), r"shape \(B,\) = \(4,\)"),
    ("no_batch_axis", lambda f: attacks.pgd(f, X[0], Y[:1], eps=0.1, key=KEY), "batch axis"),
    ("negative_eps", lambda f: attacks.pgd(f, X, Y, eps=-0.1, key=KEY), "eps must be >= 0"),
    ("eps_wrong_shape", lambda f: attacks.fgsm(f, X, Y, eps=np.ones(3)), "eps must be a scalar or have shape"),
    ("nan_eps", lambda f: attacks.fgsm(f, X, Y, eps=np.nan), "eps must be finite"),
    ("nonfinite_x", lambda f: attacks.fgsm(f, np.where(np.eye(4, 3) > 0, np.inf, X), Y, eps=0.1),
     r"NaN or inf in examples \[0, 1, 2\]"),
    ("nan_x_sphere", lambda f: attacks.sphere_pgd(f, X * np.nan, Y, step_size=0.1, num_steps=3), "NaN or inf"),
    ("bounds_exclude_x", lambda f: attacks.pgd(f, X, Y, eps=0.1, bounds=(0.0, 0.4), key=KEY),
     "bounds exclude x"),
    ("lbfgs_default_box_excludes", lambda f: attacks.lbfgs(f, X + 1.0, Y), "bounds=None"),
    ("lo_above_hi", lambda f: attacks.fgsm(f, X, Y, eps=0.1, bounds=(1.0, 0.0)), "lo > hi"),
    ("float_labels", lambda f: attacks.fgsm(f, X, Y.astype(np.float32), eps=0.1), "integer class labels"),
    ("int_x", lambda f: attacks.fgsm(f, X.astype(np.int32), Y, eps=0.1), "floating point"),
    ("bad_norm", lambda f: attacks.pgd(f, X, Y, eps=0.1, norm="l3", key=KEY), "norm='l3'"),
    ("bad_loss", lambda f: attacks.fgsm(f, X, Y, eps=0.1, loss="hinge"), "loss='hinge'"),
    ("bad_mode", lambda f: attacks.sphere_pgd(f, X, Y, step_size=0.1, num_steps=3, mode="far"), "mode='far'"),
    ("missing_key", lambda f: attacks.pgd(f, X, Y, eps=0.1), "pass key="),
    ("key_wrong_batch", lambda f: attacks.pgd(f, X, Y, eps=0.1, key=jax.random.split(KEY, 3)), "one key per example"),
    ("negative_steps", lambda f: attacks.pgd(f, X, Y, eps=0.1, num_steps=-1, key=KEY), "num_steps must be"),
    ("restarts_without_random_start", lambda f: attacks.pgd(f, X, Y, eps=0.1, restarts=3, random_start=False),
     "restarts > 1"),
    ("zero_step_sphere", lambda f: attacks.sphere_pgd(f, X, Y, step_size=0.0, num_steps=3), "step_size must be > 0"),
    ("zero_norm_sphere", lambda f: attacks.sphere_pgd(f, X * 0, Y, step_size=0.1, num_steps=3), "zero norm"),
    ("zero_max_radius", lambda f: attacks.nearest_error_l2(f, X, Y, max_radius=0.0), "max_radius must be > 0"),
    ("lbfgs_c_factor", lambda f: attacks.lbfgs(f, X, Y, c_factor=1.0), "c_factor"),
    ("min_eps_given_eps", lambda f: attacks.minimal_epsilon(attacks.fgsm, f, X, Y, hi=1.0, eps=0.3), "do not pass eps"),
    ("min_eps_lo_above_hi", lambda f: attacks.minimal_epsilon(attacks.fgsm, f, X, Y, lo=2.0, hi=1.0), "lo <= hi"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in NO_MODEL_NEEDED], ids=[c[0] for c in NO_MODEL_NEEDED])
def test_bad_input_rejected_before_tracing(call, message):
    f = Counting()
    cached = _base._run_batched._cache_size()
    with pytest.raises(ValueError, match=message):
        call(f)
    assert f.calls == 0, "logit_fn was traced before the input was rejected"
    assert _base._run_batched._cache_size() == cached


LABELS = [
    ("binary_label_2", None, np.array([0, 1, 2, 0]), "labels must be 0 or 1"),
    ("binary_negative", None, np.array([0, -1, 0, 0]), "labels must be 0 or 1"),
    ("multiclass_label_k", 3, np.array([0, 1, 3, 2]), r"labels must be in \[0, 3\)"),
]
ATTACKS = {
    "fgsm": lambda f, y: attacks.fgsm(f, X, y, eps=0.1),
    "pgd": lambda f, y: attacks.pgd(f, X, y, eps=0.1, key=KEY),
    "sphere_pgd": lambda f, y: attacks.sphere_pgd(f, X, y, step_size=0.1, num_steps=2),
    "nearest_error_l2": lambda f, y: attacks.nearest_error_l2(f, X, y, max_radius=1.0),
    "lbfgs": lambda f, y: attacks.lbfgs(f, X, y),
    "transfer": lambda f, y: attacks.transfer_error_rates(X, y, {"m": f}),
}


@pytest.mark.parametrize("name, k, labels, message", LABELS, ids=[c[0] for c in LABELS])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_labels_out_of_range_rejected_after_shape_only_evaluation(attack, name, k, labels, message):
    f = Counting(k)
    cached = _base._run_batched._cache_size()
    with pytest.raises(ValueError, match=message):
        ATTACKS[attack](f, labels.astype(np.int32))
    assert f.calls <= 1, "only jax.eval_shape may call logit_fn before the label check"
    assert _base._run_batched._cache_size() == cached


def test_logit_fn_with_batch_axis_output_is_explained():
    f = lambda x: jnp.sum(x)[None]           # returns shape (1,): forgot to index the batch axis
    with pytest.raises(ValueError, match=r"returned shape \(1,\).*x\[None\]\)\[0\]"):
        attacks.fgsm(f, X, Y, eps=0.1)
