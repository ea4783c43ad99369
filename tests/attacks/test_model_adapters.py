"""`attacks.Model`: batched and per-example declarations, wrong declarations, Flax Linen, Flax
NNX and Equinox modules, the bounds convention and ``y=None``."""

from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _attack_models import D, K, mlp_apply, trained_mlp
from flax import nnx

import attacks
from attacks import _base, _model

KEY = jax.random.key(0)
EPS = 0.4


class LinenMLP(nn.Module):
    """A batched Flax classifier ``(B, D) -> (B, K)``; flattens with ``x.reshape(B, -1)`` as
    image models do, so a per-example call reaches its Dense layer with the wrong width."""

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(16, name="hidden")(x.reshape(x.shape[0], -1)))
        return nn.Dense(K, name="out")(h)


def linen_setup():
    p, x, y = trained_mlp()
    variables = {"params": {"hidden": {"kernel": p["W1"].T, "bias": p["b1"]},
                            "out": {"kernel": p["W2"].T, "bias": p["b2"]}}}
    return LinenMLP(), variables, p, x[:12], y[:12]


def same(a, b, **tol):
    for field, u, v in zip(attacks.AttackResult._fields, a, b):
        if tol and u.dtype.kind == "f":
            np.testing.assert_allclose(u, v, err_msg=field, **tol)
        else:
            np.testing.assert_array_equal(u, v, err_msg=field)


def pgd(model, x, y, **kw):
    return attacks.pgd(model, x, y, eps=EPS, num_steps=5, key=KEY, **kw)


# --------------------------------------------------------------------------- declarations


def test_batched_and_per_example_declarations_give_identical_results():
    module, variables, p, x, y = linen_setup()
    batched = pgd(attacks.Model.from_flax(module, variables), x, y)
    per_example = pgd(attacks.Model(lambda v, e: module.apply(v, e[None])[0], params=variables), x, y)
    # The same operations on the same numbers (vmap folds the per-example calls into the batch):
    # bit-identical.
    same(batched, per_example)
    # A hand-written per-example function of the same weights: float32 matmuls in another
    # orientation round differently (~1e-7 relative on the logits), so the discrete outcome is
    # compared exactly and the points to 1e-5.
    plain = pgd(mlp_apply, x, y, params=p)
    np.testing.assert_array_equal(batched.success, plain.success)
    np.testing.assert_allclose(batched.x_adv, plain.x_adv, atol=1e-5)
    assert batched.success.any() and not batched.success.all()


def test_batched_lambda_and_from_flax_are_the_same_path():
    module, variables, _, x, y = linen_setup()
    fn = lambda v, e: module.apply(v, e)           # noqa: E731 -- the batched function users have
    a = pgd(attacks.Model(fn, batched=True, params=variables), x, y)
    b = pgd(attacks.Model.from_flax(module, variables), x, y)
    same(a, b)


def test_per_example_use_of_a_batched_flax_model_is_one_clear_error():
    module, variables, _, x, y = linen_setup()
    cached = _base._run_batched._cache_size()
    with pytest.raises(ValueError, match=r"declared per-example.*ONE example of shape \(8,\).*"
                                         r"ScopeParamShapeError.*attacks\.Model\(fn, batched=True\)"):
        attacks.pgd(lambda v, e: module.apply(v, e), x, y, eps=EPS, key=KEY, params=variables)
    assert _base._run_batched._cache_size() == cached, "the error must come before compilation"


def test_batched_declaration_of_a_per_example_function_is_one_clear_error():
    p, x, y = trained_mlp()
    with pytest.raises(ValueError, match=r"declared batched.*batch of 2 examples of shape \(2, 8\).*"
                                         r"raised TypeError.*batched=False"):
        attacks.fgsm(attacks.Model(mlp_apply, batched=True, params=p), x, y, eps=EPS)
    # A batched declaration whose function returns one example's logits: named as such.
    with pytest.raises(ValueError, match=r"must return \(2,\).*or \(2, K\).*returned \(4,\).*ONE example"):
        attacks.fgsm(attacks.Model(lambda e: mlp_apply(p, e[0]), batched=True), x, y, eps=EPS)


def test_params_twice_and_bad_model_types_are_refused():
    p, x, y = trained_mlp()
    with pytest.raises(ValueError, match="params were given twice"):
        attacks.fgsm(attacks.Model(mlp_apply, params=p), x, y, eps=EPS, params=p)
    with pytest.raises(TypeError, match="callable"):
        attacks.Model("not a function")
    with pytest.raises(TypeError, match="callable"):
        attacks.fgsm(42, x, y, eps=EPS)


def test_new_params_in_a_model_do_not_recompile():
    module, variables, _, x, y = linen_setup()
    pgd(attacks.Model.from_flax(module, variables), x, y)
    cached = _base._run_batched._cache_size()
    scaled = jax.tree.map(lambda a: 1.1 * a, variables)
    pgd(attacks.Model.from_flax(module, scaled), x, y)      # a new Model object, same module
    assert _base._run_batched._cache_size() == cached


# --------------------------------------------------------------------------- NNX and Equinox


class NNXMLP(nnx.Module):
    def __init__(self, p):
        self.hidden = nnx.Linear(D, 16, rngs=nnx.Rngs(0))
        self.out = nnx.Linear(16, K, rngs=nnx.Rngs(1))
        self.hidden.kernel[...], self.hidden.bias[...] = p["W1"].T, p["b1"]
        self.out.kernel[...], self.out.bias[...] = p["W2"].T, p["b2"]

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def test_flax_nnx_module_through_split_and_merge():
    p, x, y = trained_mlp()
    x, y = x[:12], y[:12]
    module = NNXMLP(p)
    res = pgd(attacks.Model.from_nnx(module), x, y)
    ref = pgd(mlp_apply, x, y, params=p)
    np.testing.assert_array_equal(res.success, ref.success)      # as in the Linen test: 1e-5
    np.testing.assert_allclose(res.x_adv, ref.x_adv, atol=1e-5)
    cached = _base._run_batched._cache_size()
    module.out.bias[...] = module.out.bias[...] + 0.1             # new state, same graph
    pgd(attacks.Model.from_nnx(module), x, y)
    assert _base._run_batched._cache_size() == cached


def test_equinox_module_is_split_into_arrays_and_static_parts():
    eqx = pytest.importorskip("equinox")
    p, x, y = trained_mlp()
    x, y = x[:12], y[:12]
    mlp = eqx.nn.MLP(D, K, 16, depth=1, activation=jnp.tanh, key=jax.random.key(0))
    mlp = eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[0].bias, m.layers[1].weight, m.layers[1].bias),
                      mlp, (p["W1"], p["b1"], p["W2"], p["b2"]))
    ref = pgd(mlp_apply, x, y, params=p)
    for model in (mlp, attacks.Model(mlp)):        # the module itself, or declared (per-example)
        res = pgd(model, x, y)
        # Same per-example arithmetic as mlp_apply: float32 agrees to rounding.
        np.testing.assert_array_equal(res.success, ref.success)
        np.testing.assert_allclose(res.x_adv, ref.x_adv, atol=1e-6)
    cached = _base._run_batched._cache_size()
    pgd(eqx.tree_at(lambda m: m.layers[1].bias, mlp, p["b2"] + 0.1), x, y)   # new weights
    assert _base._run_batched._cache_size() == cached, "a module's arrays are traced, not static"


# --------------------------------------------------------------------------- bounds convention


def box_model(bounds=(0.0, 1.0)):
    p, x, y = trained_mlp()
    # Inside the box, many coordinates within ε = 0.3 of its faces.
    x = jnp.clip(0.5 + 0.25 * x, bounds[0] + 0.05, bounds[1] - 0.05)
    return attacks.Model(mlp_apply, params=p, bounds=bounds), p, x[:12], y[:12]


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd"])
def test_every_fixed_budget_attack_respects_the_model_bounds(name):
    model, p, x, y = box_model()
    call = {"fgsm": lambda m, **kw: attacks.fgsm(m, x, y, eps=0.3, **kw),
            "pgd": lambda m, **kw: attacks.pgd(m, x, y, eps=0.3, num_steps=5, key=KEY, **kw),
            "apgd": lambda m, **kw: attacks.apgd(m, x, y, eps=0.3, num_steps=5, key=KEY, **kw)}[name]
    res = call(model)
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    # The attack's bounds=None means "the model's": the same as passing them explicitly.
    same(res, call(attacks.Model(mlp_apply, params=p), bounds=(0.0, 1.0)))
    # An explicit box replaces the model's for that call.
    narrow = call(model, bounds=(0.02, 0.98))
    # The box is float32 like x: compare with its float32 ends (0.98 rounds up).
    assert narrow.x_adv.min() >= np.float32(0.02) and narrow.x_adv.max() <= np.float32(0.98)
    unbounded = call(attacks.Model(mlp_apply, params=p))
    assert float(unbounded.x_adv.min()) < 0.0 or float(unbounded.x_adv.max()) > 1.0


def test_lbfgs_reads_the_model_bounds_and_deprecates_its_implicit_unit_box():
    model, p, x, y = box_model(bounds=(0.1, 0.9))
    t = (y + 1) % K
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # a Model never triggers the deprecation
        res = attacks.lbfgs(model, x, t, c_rounds=3, maxiter=10)
        unbounded = attacks.lbfgs(attacks.Model(mlp_apply, params=p), x, t, c_rounds=3, maxiter=10)
    assert res.x_adv.min() >= np.float32(0.1) and res.x_adv.max() <= np.float32(0.9)
    assert unbounded.x_adv.min() < np.float32(0.1) or unbounded.x_adv.max() > np.float32(0.9)
    with pytest.warns(DeprecationWarning, match=r"clips to \[0, 1\]"):
        old = attacks.lbfgs(mlp_apply, x, t, params=p, c_rounds=3, maxiter=10)
    assert float(old.x_adv.min()) >= 0.0 and float(old.x_adv.max()) <= 1.0


def test_sphere_and_nearest_attacks_refuse_a_bounded_model():
    model, _, x, y = box_model()
    with pytest.raises(ValueError, match="sphere_pgd keeps every point on a sphere.*bounds"):
        attacks.sphere_pgd(model, x, y, step_size=0.1, num_steps=3)
    with pytest.raises(ValueError, match="nearest_error_l2 searches without a box"):
        attacks.nearest_error_l2(model, x, y, max_radius=1.0)


# --------------------------------------------------------------------------- y=None


ATTACKS_WITH_DEFAULT_LABELS = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, eps=EPS),
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, eps=EPS, num_steps=4, key=KEY),
    "apgd": lambda m, x, y: attacks.apgd(m, x, y, eps=EPS, num_steps=4, key=KEY),
    "sphere_pgd": lambda m, x, y: attacks.sphere_pgd(m, x, y, step_size=0.1, num_steps=5),
    "nearest_error_l2": lambda m, x, y: attacks.nearest_error_l2(m, x, y, max_radius=2.0, num_steps=5,
                                                                  refine_steps=2),
}


@pytest.mark.parametrize("name", list(ATTACKS_WITH_DEFAULT_LABELS))
def test_no_labels_attacks_the_predictions(name):
    p, x, y = trained_mlp()
    model = attacks.Model(mlp_apply, params=p)
    x = x[:12]
    predictions = attacks.predict(model, x)
    run = ATTACKS_WITH_DEFAULT_LABELS[name]
    res = run(model, x, None)
    same(res, run(model, x, predictions))
    other = run(model, x, (predictions + 1) % K)       # the comparison does depend on the labels
    assert not np.array_equal(res.loss, other.loss)


def test_targeted_attacks_need_targets():
    p, x, _ = trained_mlp()
    with pytest.raises(ValueError, match="targeted attack needs its target labels"):
        attacks.pgd(mlp_apply, x, eps=EPS, key=KEY, targeted=True, params=p)
    with pytest.raises(ValueError, match="targeted: pass the target labels"):
        attacks.lbfgs(mlp_apply, x, None, params=p, bounds=None)


# --------------------------------------------------------------------------- output-shape rules

X3 = jnp.zeros((5, 3))


def classes(fn, **kw):
    return _model.num_classes(_model.resolve(attacks.Model(fn, **kw) if kw else fn), X3)


def test_output_shapes_each_declaration_accepts():
    """Binary logit or K >= 2 scores, per example or per batch (PROBE_BATCH = 2 rows)."""
    assert classes(lambda x: x.sum()) == 2                               # per example: scalar
    assert classes(lambda x: x[:2]) == 2                                 # (2,): K = 2
    assert classes(lambda x: x) == 3                                     # (3,): K = 3
    assert classes(lambda x: x.sum(-1), batched=True) == 2               # (B,): binary
    assert classes(lambda x: x[:, :2], batched=True) == 2                # (B, 2)
    assert classes(lambda x: x, batched=True) == 3                       # (B, 3)
    assert attacks.Model.from_nnx(NNXMLP(trained_mlp()[0])).batched is True   # NNX: batched default


def test_output_shapes_each_declaration_refuses():
    with pytest.raises(ValueError, match=r"K >= 2 class scores for ONE example.*returned shape \(1,\)"):
        classes(lambda x: x[:1])                                         # one class score
    with pytest.raises(ValueError, match=r"returned shape \(1, 3\)"):
        classes(lambda x: x[None])                                       # a batch axis of one
    with pytest.raises(ValueError, match=r"returned \(2, 1\)\.$"):      # (B, 1): no "ONE example" hint
        classes(lambda x: x[:, :1], batched=True)
    with pytest.raises(ValueError, match=r"returned \(3,\)\. That is the shape of ONE example"):
        classes(lambda x: x[0], batched=True)
    with pytest.raises(ValueError, match=r"returned None\.$"):          # not an array at all
        classes(lambda x: (x, x), batched=True)


def test_unhashable_function_is_named_and_unhashable_params_structure_still_works():
    class Logits:
        __hash__ = None

        def __call__(self, x):
            return x

    with pytest.raises(TypeError, match=r"logit function \(Logits\) is not hashable"):
        _model.resolve(Logits())

    @jax.tree_util.register_pytree_node_class
    class ListAux:                      # its static part (a list) is unhashable: no shape cache
        def __init__(self, w, tag):
            self.w, self.tag = w, tag

        def tree_flatten(self):
            return (self.w,), list(self.tag)

        @classmethod
        def tree_unflatten(cls, aux, leaves):
            return cls(leaves[0], aux)

    params = ListAux(jnp.ones((3, 4)), ["a"])
    assert classes(lambda p, x: x @ p.w, params=params) == 4
