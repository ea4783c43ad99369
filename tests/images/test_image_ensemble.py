"""spheres.images.ensemble: the mean-probability ensemble's logits and FGSM against it.

Independent references: the members' own logits (`predict_logits`) combined in NumPy float64, and
the identity CE(log_softmax(z), y) = CE(z, y), which makes an ensemble of K copies of one model
attack exactly like that model. Tolerances: float32 logits (1e-5 relative on probabilities).
"""

import jax
import numpy as np
import pytest

from spheres.images import models as im
from spheres.images.adversarial import fgsm_examples
from spheres.images.ensemble import ensemble_apply_fn, ensemble_fgsm, ensemble_logits, stack_members
from spheres.images.evaluate import predict_logits


@pytest.fixture(scope="module")
def members():
    recipe = im.paper_model("maxout-240", maxout_units=8, maxout_pieces=2)
    vs = [im.init_variables(recipe.module, jax.random.key(k)) for k in range(3)]
    x = np.asarray(jax.random.uniform(jax.random.key(9), (13, 28, 28)))
    y = np.asarray(jax.random.randint(jax.random.key(8), (13,), 0, 10), np.int32)
    return recipe, vs, x, y


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_logits_are_the_log_of_the_members_mean_probability(members):
    recipe, vs, x, _ = members
    ref = np.mean([_softmax(predict_logits(recipe.module, v, x)) for v in vs], axis=0)
    got = ensemble_logits(recipe.module, stack_members(vs), x)
    assert got.shape == (13, 10)
    np.testing.assert_allclose(np.exp(got.astype(np.float64)), ref, rtol=1e-5, atol=1e-7)
    # chunked with padding (13 = 5 + 5 + 3) equals one call
    np.testing.assert_array_equal(ensemble_logits(recipe.module, stack_members(vs), x, batch=5), got)
    # one member: the member's own probabilities
    one = ensemble_logits(recipe.module, stack_members(vs[:1]), x)
    np.testing.assert_allclose(_softmax(one), _softmax(predict_logits(recipe.module, vs[0], x)), rtol=1e-5)


def test_fgsm_on_copies_of_one_model_is_that_models_fgsm(members):
    recipe, vs, x, y = members
    ref, _ = fgsm_examples(recipe, vs[0], x, y, 0.1, clip=True)
    got = ensemble_fgsm(recipe.module, stack_members([vs[0]] * 3), x, y, 0.1, clip=True, batch=4)
    assert got.shape == x.shape and got.min() >= 0.0 and got.max() <= 1.0
    # the same sign step, except where a gradient coordinate is ~0 and rounding decides its sign
    assert np.mean(np.isclose(got, ref, atol=1e-6)) > 0.999


def test_fgsm_raises_the_ensemble_loss_by_its_first_order_amount(members):
    # unclipped, the step is ε·sign(g): the loss grows, by about ε‖g‖₁ for a small ε (first order)
    recipe, vs, x, y = members
    st = stack_members(vs)
    f = ensemble_apply_fn(recipe.module)

    def loss(xi, yi):
        return -jax.nn.log_softmax(f(st, xi))[yi]

    eps = 1e-3
    adv = ensemble_fgsm(recipe.module, st, x, y, eps, clip=False)
    for i in range(4):
        xi = x[i].reshape(-1)
        g = np.asarray(jax.grad(loss)(xi, y[i]), np.float64)
        gain = float(loss(adv[i].reshape(-1), y[i]) - loss(xi, y[i]))
        assert gain == pytest.approx(eps * np.abs(g).sum(), rel=0.05)   # second-order terms: ~ε


def test_bad_input_is_refused(members):
    recipe, vs, x, y = members
    with pytest.raises(ValueError, match="at least one member"):
        stack_members([])
    other = im.init_variables(im.paper_model("maxout-240", maxout_units=4, maxout_pieces=2).module,
                              jax.random.key(0))
    with pytest.raises(ValueError, match="share one architecture"):
        stack_members([vs[0], {"params": {"x": other["params"]}}])
    with pytest.raises(ValueError, match="softmax probabilities"):
        ensemble_apply_fn(im.paper_model("rbf").module)
    with pytest.raises(ValueError, match="y must have shape"):
        ensemble_fgsm(recipe.module, stack_members(vs), x, y[:5], 0.1, clip=True)
    with pytest.raises(ValueError, match="empty input"):
        ensemble_logits(recipe.module, stack_members(vs), x[:0])
    with pytest.raises(ValueError, match="empty input"):
        ensemble_fgsm(recipe.module, stack_members(vs), x[:0], y[:0], 0.1, clip=True)
