"""Exact population BatchNorm statistics of the ReLU net (`models.population_batch_stats`), the
float64 evaluation and the learning-rate schedule behind ``sphere-relu``'s options."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spheres.sphere import models, train


def _net_with_nontrivial_bn(key, features=(16, 8), d=5, epsilon=1e-5):
    """A SphereMLP whose BatchNorm scales and biases are not the identity (so that layer 2's
    statistics depend on layer 1's normalisation)."""
    model = models.SphereMLP(features=features, epsilon=epsilon)
    v = model.init(key, jnp.zeros((1, d)))
    leaves, tree = jax.tree_util.tree_flatten(v["params"])
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    return model, {"params": jax.tree_util.tree_unflatten(tree, leaves), "batch_stats": v["batch_stats"]}


def test_population_stats_equal_numpy_moments_on_the_same_sample():
    """Layer by layer in float64 with the earlier layers on population statistics, merged over
    uneven chunks: equal to numpy's mean / biased variance of the whole sample to 1e-10."""
    model, v = _net_with_nontrivial_bn(jax.random.key(0))
    x = np.asarray(jax.random.normal(jax.random.key(2), (3001, 5)), np.float64) * 2 + 0.5
    stats = models.population_batch_stats(model, v, lambda: (x[i:i + 700] for i in range(0, len(x), 700)))
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax.device_get(v["params"]))
    h = x
    for i in range(2):
        z = h @ p[f"Dense_{i}"]["kernel"]
        mean, var = z.mean(axis=0), z.var(axis=0)
        np.testing.assert_allclose(stats[f"BatchNorm_{i}"]["mean"], mean, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats[f"BatchNorm_{i}"]["var"], var, rtol=1e-10, atol=1e-10)
        bn = p[f"BatchNorm_{i}"]
        h = np.maximum((z - mean) / np.sqrt(var + model.epsilon) * bn["scale"] + bn["bias"], 0)
    assert stats["BatchNorm_0"]["mean"].dtype == np.float64


@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])
def test_eval_with_population_stats_equals_train_mode_on_that_batch(epsilon):
    """When the sample is the batch itself, its population statistics are the batch statistics:
    eval-mode logits equal train-mode logits (float32 model: 1e-5 relative)."""
    model, v = _net_with_nontrivial_bn(jax.random.key(4), epsilon=epsilon)
    x = np.asarray(jax.random.normal(jax.random.key(5), (128, 5)))
    y_train, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
    stats = models.population_batch_stats(model, v, x)
    y_eval = model.apply({**v, "batch_stats": stats}, x, train=False)
    np.testing.assert_allclose(y_eval, y_train, rtol=1e-5, atol=1e-5 * float(jnp.abs(y_train).max()))
    # and the running averages of an untrained net (mean 0, var 1) do not give the same outputs
    assert np.abs(model.apply(v, x, train=False) - y_train).max() > 1e-2


def test_float64_evaluation_computes_in_float64_on_the_same_parameters():
    model, v = _net_with_nontrivial_bn(jax.random.key(6))
    x = np.asarray(jax.random.normal(jax.random.key(7), (64, 5)))
    y32 = model.apply(v, x, train=False)
    with jax.enable_x64(True):
        v64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax.device_get(v))
        y64 = model.clone(dtype=jnp.float64).apply(v64, np.asarray(x, np.float64), train=False)
        ref = model.clone(dtype=jnp.float64).apply(v64, np.asarray(x, np.float64) * (1 + 1e-12), train=False)
    assert y64.dtype == jnp.float64
    np.testing.assert_allclose(y64, y32, rtol=1e-4, atol=1e-5)      # float32 rounding only
    assert np.abs(np.asarray(ref) - np.asarray(y64)).max() < 1e-9     # resolves a 1e-12 change


def test_glorot_init_and_bn_options_reach_the_layers():
    m = models.SphereMLP(features=(8,), epsilon=1e-3, momentum=0.9, kernel_init="glorot_uniform")
    v = m.init(jax.random.key(0), jnp.zeros((1, 30)))
    k = np.asarray(v["params"]["Dense_0"]["kernel"])
    limit = np.sqrt(6 / (30 + 8))                                  # glorot uniform bound
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.8 * limit
    x = np.asarray(jax.random.normal(jax.random.key(1), (16, 30)))
    _, upd = m.apply(v, x, train=True, mutable=["batch_stats"])
    z = x @ k
    np.testing.assert_allclose(upd["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * z.mean(0), rtol=1e-4, atol=1e-6)


def test_linear_decay_schedule():
    """Constant lr for the first half of 100 steps, then linear to 0 at step 100 (SGD: the update
    of a gradient of 1 is −lr)."""
    tx = train.make_optimizer("sgd", 0.5, schedule="linear_decay", steps=100, decay_fraction=0.5)
    params = jnp.zeros(())
    state = tx.init(params)
    lrs = []
    for _ in range(100):
        upd, state = tx.update(jnp.ones(()), state, params)
        lrs.append(-float(upd))
    np.testing.assert_allclose(lrs[:51], 0.5, rtol=1e-6)
    np.testing.assert_allclose(lrs[75], 0.5 * 25 / 50, rtol=1e-6)
    np.testing.assert_allclose(lrs[99], 0.5 / 50, rtol=1e-6)
    assert isinstance(train.make_optimizer("adam", 1e-4), optax.GradientTransformation)   # old signature
    with pytest.raises(ValueError, match="linear_decay needs steps"):
        train.make_optimizer("adam", 1e-4, schedule="linear_decay")
    with pytest.raises(ValueError, match="unknown schedule"):
        train.make_optimizer("adam", 1e-4, schedule="cosine")
