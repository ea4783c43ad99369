"""Property harness run over every attack × a binary and a multi-class model (docs/design.md, "Contracts").

For each attack configuration it checks: the returned point satisfies the attack's constraint
(ε-ball, box, sphere radius, search radius); ``success``, ``distance`` and ``loss`` agree with
calling the model on ``x_adv`` ourselves; a fixed key gives identical results; a second call
with the same shapes does not retrace / recompile; the jitted+vmapped batch equals a Python
loop of single-example calls and an eager (``jax.disable_jit``) per-example loop.

All in float64 so that "equal" comparisons are not at the mercy of float32 rounding.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks import _base

D, B, K, HIDDEN = 4, 5, 3, 8
N_EAGER = 2


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------------------- models


class Model:
    """A small tanh MLP with a trace counter (incremented each time logit_fn is traced/run)."""

    def __init__(self, kind: str):
        self.kind, self.traces = kind, 0
        rng = np.random.default_rng(0 if kind == "binary" else 1)
        out = () if kind == "binary" else (K,)
        self.raw = {"W1": rng.normal(size=(HIDDEN, D)) * 2.0, "b1": rng.normal(size=HIDDEN),
                    "W2": rng.normal(size=out + (HIDDEN,)), "b2": rng.normal(size=out) * 0.1}
        if kind == "binary":          # params= form: logit_fn(params, x)
            def fn(p, x):
                self.traces += 1
                return p["W2"] @ jnp.tanh(p["W1"] @ x + p["b1"]) + p["b2"]
        else:                          # closure form: logit_fn(x)
            def fn(x):
                self.traces += 1
                p = self.params_closure
                return p["W2"] @ jnp.tanh(p["W1"] @ x + p["b1"]) + p["b2"]
        self.fn = fn

    @property
    def params(self):
        p = jax.tree_util.tree_map(jnp.asarray, self.raw)
        self.params_closure = p
        return p if self.kind == "binary" else None

    def apply(self, x):
        p = jax.tree_util.tree_map(jnp.asarray, self.raw)
        return p["W2"] @ jnp.tanh(p["W1"] @ x + p["b1"]) + p["b2"]


MODELS = {kind: Model(kind) for kind in ("binary", "multiclass")}


def data(model: Model, seed: int):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(0.1, 0.9, size=(B, D)))
    y = jax.vmap(lambda v: _base.predict_class(model.apply(v)))(x)   # start correctly classified
    num = 2 if model.kind == "binary" else K
    target = (y + 1) % num
    return x, y, target


# --------------------------------------------------------------------------- attack cases


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    run: Callable            # (fn, x, labels, key, params) -> AttackResult
    constraint: tuple        # ("linf" | "l2", eps) / ("sphere", radius | None) / ("radius", R)
    targeted: bool = False
    keyed: bool = False
    box: tuple | None = None
    loss: str = "ce"
    norm: str = "l2"
    # The L-BFGS stopping tests (ftol, line-search failure) compare numbers equal to ~1 ulp near
    # convergence, so the iteration COUNT of a round may differ by a few between programs even
    # when the returned point agrees to 1e-16; only the count is then compared loosely.
    exact_steps: bool = True
    atol: float = 1e-10


BOX = (0.0, 1.0)
CASES = [
    Case("fgsm_linf", lambda f, x, y, k, p: attacks.fgsm(f, x, y, eps=0.3, params=p),
         ("linf", 0.3), norm="linf"),
    Case("fgsm_l2_box_targeted", lambda f, x, y, k, p: attacks.fgsm(
        f, x, y, eps=0.5, norm="l2", bounds=BOX, targeted=True, params=p), ("l2", 0.5),
        targeted=True, box=BOX),
    Case("pgd_linf_box_restarts", lambda f, x, y, k, p: attacks.pgd(
        f, x, y, eps=0.2, norm="linf", num_steps=8, bounds=BOX, restarts=2, key=k, params=p),
        ("linf", 0.2), keyed=True, box=BOX, norm="linf"),
    Case("pgd_l2_margin", lambda f, x, y, k, p: attacks.pgd(
        f, x, y, eps=0.6, norm="l2", num_steps=8, loss="margin", key=k, params=p),
        ("l2", 0.6), keyed=True, loss="margin"),
    Case("pgd_l2_targeted_early_stop", lambda f, x, y, k, p: attacks.pgd(
        f, x, y, eps=0.8, norm="l2", num_steps=8, targeted=True, early_stop=True, key=k, params=p),
        ("l2", 0.8), targeted=True, keyed=True),
    Case("sphere_nearest", lambda f, x, y, k, p: attacks.sphere_pgd(
        f, x, y, step_size=0.1, num_steps=30, mode="nearest", key=k, params=p),
        ("sphere", None), keyed=True),
    Case("sphere_worst_case_radius", lambda f, x, y, k, p: attacks.sphere_pgd(
        f, x, y, step_size=0.2, num_steps=15, mode="worst_case", radius=1.5, params=p),
        ("sphere", 1.5)),
    Case("nearest_error_l2", lambda f, x, y, k, p: attacks.nearest_error_l2(
        f, x, y, max_radius=2.0, num_steps=10, refine_steps=5, params=p), ("radius", 2.0)),
    Case("lbfgs_box", lambda f, x, t, k, p: attacks.lbfgs(
        f, x, t, bounds=BOX, c_rounds=4, maxiter=15, params=p), ("box",), targeted=True, box=BOX,
        exact_steps=False, atol=1e-6),   # 1e-6: well inside the solver's tol=1e-5
]
IDS = [c.name for c in CASES]
KEY = jax.random.key(7)
_PRIMARY: dict = {}


def call(case: Case, model: Model, x, y, t, key=KEY):
    labels = t if case.targeted else y
    return case.run(model.fn, x, labels, key if case.keyed else None, model.params)


def primary(case: Case, kind: str):
    """The first (compiling) call of each case × model, shared by the tests below."""
    if (case.name, kind) not in _PRIMARY:
        model = MODELS[kind]
        x, y, t = data(model, seed=0)
        _PRIMARY[case.name, kind] = (x, y, t, call(case, model, x, y, t))
    return _PRIMARY[case.name, kind]


@pytest.fixture(params=list(MODELS))
def kind(request):
    return request.param


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_satisfies_constraint(case, kind):
    x, y, t, res = primary(case, kind)
    assert res.x_adv.shape == x.shape and res.success.shape == (B,) and res.num_steps.shape == (B,)
    assert np.all(np.isfinite(res.x_adv))
    flat = (res.x_adv - x).reshape(B, -1)
    kind_, *arg = case.constraint
    # 1e-5 relative is the tolerance; in float64 the projections are exact to ~1e-15.
    if kind_ == "linf":
        assert np.all(np.max(np.abs(flat), axis=1) <= arg[0] * (1 + 1e-5))
    elif kind_ in ("l2", "radius"):
        assert np.all(np.linalg.norm(flat, axis=1) <= arg[0] * (1 + 1e-5))
    elif kind_ == "sphere":
        radius = np.linalg.norm(x, axis=1) if arg[0] is None else arg[0]
        np.testing.assert_allclose(np.linalg.norm(res.x_adv, axis=1), radius, rtol=1e-5)
    if case.box is not None:   # the box holds exactly: clipping is the last operation
        assert np.all(res.x_adv >= case.box[0]) and np.all(res.x_adv <= case.box[1])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_success_distance_loss_rechecked_on_model(case, kind):
    x, y, t, res = primary(case, kind)
    model = MODELS[kind]
    labels = t if case.targeted else y
    logits = jax.vmap(model.apply)(res.x_adv)
    pred = jax.vmap(_base.predict_class)(logits)
    expected = pred == labels if case.targeted else pred != labels
    np.testing.assert_array_equal(res.success, expected)
    assert res.success.any(), "harness settings should break at least one example"
    objective = jax.vmap(lambda z, l: _base.adversarial_objective(
        z, l, loss=case.loss, targeted=case.targeted))(logits, labels)
    # Same formula on the same point: equal up to float64 rounding.
    np.testing.assert_allclose(res.loss, objective, rtol=1e-10, atol=1e-12)
    flat = (res.x_adv - x).reshape(B, -1)
    dist = np.max(np.abs(flat), axis=1) if case.norm == "linf" else np.linalg.norm(flat, axis=1)
    np.testing.assert_allclose(res.distance, dist, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_deterministic_and_no_recompile(case, kind):
    x, y, t, res = primary(case, kind)
    model = MODELS[kind]
    traces, cached = model.traces, _base._run_batched._cache_size()
    again = call(case, model, x, y, t)
    x2, y2, t2 = data(model, seed=1)           # new values, same shapes
    call(case, model, x2, y2, t2)
    assert model.traces == traces, "second call with the same shapes retraced logit_fn"
    assert _base._run_batched._cache_size() == cached, "second call compiled a new program"
    for a, b in zip(res, again):               # fixed key -> bit-identical
        np.testing.assert_array_equal(a, b)


def _eager_execute(attack, logit_fn, config, params, batch):
    """Reference executor: a Python loop over examples, no vmap, no jit."""
    model = _base.bind(logit_fn, params)
    n = jax.tree_util.tree_leaves(batch)[0].shape[0]
    with jax.disable_jit():
        outs = [attack(model, config, jax.tree_util.tree_map(lambda a: a[i], batch)) for i in range(n)]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)


def _assert_same(res, ref, exact_steps=True, atol=1e-10):
    # float64: reassociation differs between fused/vmapped/eager code by ~1e-16 per operation,
    # amplified over at most a few dozen iterations; discrete outcomes must agree exactly.
    np.testing.assert_array_equal(res.success, ref.success)
    if exact_steps:
        np.testing.assert_array_equal(res.num_steps, ref.num_steps)
    else:   # a few iterations out of dozens
        np.testing.assert_allclose(res.num_steps, ref.num_steps, rtol=0.15)
    np.testing.assert_allclose(res.x_adv, ref.x_adv, rtol=1e-8, atol=atol)
    np.testing.assert_allclose(res.distance, ref.distance, rtol=1e-8, atol=atol)
    np.testing.assert_allclose(res.loss, ref.loss, rtol=1e-8, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batch_is_permutation_equivariant(case, kind):
    # Same shapes, so no compilation: example i's result must not depend on its position or on
    # the other examples in the batch (no shared early stop, no coupled solves).
    x, y, t, res = primary(case, kind)
    model = MODELS[kind]
    perm = np.array([3, 0, 4, 1, 2])
    keys = jax.random.split(KEY, B)            # the per-example keys `primary` used
    permuted = call(case, model, x[perm], y[perm], t[perm], key=keys[perm])
    _assert_same(permuted, jax.tree_util.tree_map(lambda a: a[perm], res), case.exact_steps, case.atol)


# A batch of one is a new shape (one more compilation per case); the multi-class half is slow.
LOOP_PARAMS = [pytest.param(c, k, id=f"{k}-{c.name}", marks=[pytest.mark.slow] if k == "multiclass" else [])
               for k in MODELS for c in CASES]


@pytest.mark.parametrize("case, kind", LOOP_PARAMS)
def test_batch_equals_python_loop(case, kind):
    x, y, t, _ = primary(case, kind)
    model = MODELS[kind]
    keys = jax.random.split(KEY, B)            # per-example keys: independent of batching
    batched = call(case, model, x, y, t, key=keys)
    singles = [call(case, model, x[i:i + 1], y[i:i + 1], t[i:i + 1], key=keys[i:i + 1]) for i in range(B)]
    loop = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *singles)
    _assert_same(batched, loop, case.exact_steps, case.atol)


# Eager mode runs every lax loop in Python, op by op: the solver-based attacks take ~20-40 s of
# CPU each there, so their eager check is in the slow set.
EAGER_CASES = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name in ("lbfgs_box", "nearest_error_l2") else [])
               for c in CASES]


@pytest.mark.parametrize("case", EAGER_CASES)
def test_jit_equals_eager_per_example_loop(case, kind, monkeypatch):
    x, y, t, res = primary(case, kind)        # primary split KEY into B per-example keys
    model = MODELS[kind]
    n = N_EAGER
    keys = jax.random.split(KEY, B)[:n]
    batched = jax.tree_util.tree_map(lambda a: a[:n], res)
    monkeypatch.setattr(_base, "execute", _eager_execute)
    eager = call(case, model, x[:n], y[:n], t[:n], key=keys)
    _assert_same(batched, eager, case.exact_steps, case.atol)


def test_new_params_do_not_recompile():
    model = MODELS["binary"]
    x, y, _ = data(model, seed=0)
    attacks.pgd(model.fn, x, y, eps=0.1, num_steps=3, key=KEY, params=model.params)
    traces, cached = model.traces, _base._run_batched._cache_size()
    scaled = jax.tree_util.tree_map(lambda a: 1.5 * a, model.params)
    attacks.pgd(model.fn, x, y, eps=0.2, num_steps=3, key=KEY, params=scaled)
    assert model.traces == traces and _base._run_batched._cache_size() == cached


def test_any_input_shape_with_per_coordinate_bounds():
    # Image-like inputs (B, 2, 2) and bounds of the input's shape: every attack keeps the shape,
    # the box and its constraint, and judges success on what it returns.
    model = MODELS["binary"]
    img_fn = lambda p, v: model.fn(p, v.reshape(-1))
    x, y, t = data(model, seed=0)
    xi = x.reshape(B, 2, 2)
    lo = jnp.zeros((2, 2))
    hi = jnp.array([[1.0, 0.95], [1.0, 0.92]])
    p = model.params
    runs = {
        "fgsm": (attacks.fgsm(img_fn, xi, y, eps=0.3, bounds=(lo, hi), params=p), y, False),
        "pgd": (attacks.pgd(img_fn, xi, y, eps=0.5, norm="l2", num_steps=5, bounds=(lo, hi), key=KEY,
                            params=p), y, False),
        "sphere_pgd": (attacks.sphere_pgd(img_fn, xi, y, step_size=0.1, num_steps=20, params=p), y, False),
        "nearest_error_l2": (attacks.nearest_error_l2(img_fn, xi, y, max_radius=2.0, num_steps=10,
                                                      refine_steps=3, params=p), y, False),
        "lbfgs": (attacks.lbfgs(img_fn, xi, t, bounds=(lo, hi), c_rounds=3, maxiter=10, params=p), t, True),
    }
    for name, (res, labels, targeted) in runs.items():
        assert res.x_adv.shape == xi.shape, name
        if name in ("fgsm", "pgd", "lbfgs"):
            assert np.all(res.x_adv >= lo) and np.all(res.x_adv <= hi), name
        pred = jax.vmap(lambda v: _base.predict_class(model.apply(v.reshape(-1))))(res.x_adv)
        np.testing.assert_array_equal(res.success, pred == labels if targeted else pred != labels, err_msg=name)
    np.testing.assert_allclose(np.linalg.norm(runs["sphere_pgd"][0].x_adv.reshape(B, -1), axis=1),
                               np.linalg.norm(x, axis=1), rtol=1e-5)
    assert runs["lbfgs"][0].success.any() and runs["nearest_error_l2"][0].success.any()
