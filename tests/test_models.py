"""Models: the quadratic net equals its formula; the perfect-initialisation helper is perfect."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spheres import data as sdata
from spheres.models import QuadraticNet, SphereMLP, batch_logits, logit_fn, perfect_quadratic_variables


def test_quadratic_net_equals_formula():
    model = QuadraticNet(hidden=7)
    x = sdata.sample_sphere(jax.random.key(1), 5, 4)
    v = model.init(jax.random.key(0), x)
    v = {"params": {**v["params"], "w": jnp.asarray(0.7), "b": jnp.asarray(-1.2)}}
    W = np.asarray(v["params"]["W"], np.float64)
    assert W.shape == (7, 4)
    expect = 0.7 * ((np.asarray(x, np.float64) @ W.T) ** 2).sum(1) - 1.2
    np.testing.assert_allclose(batch_logits(model, v, x), expect, rtol=1e-5, atol=1e-6)  # float32
    f = logit_fn(model, v)
    np.testing.assert_allclose(jax.vmap(f)(x), expect, rtol=1e-5, atol=1e-6)


def test_sphere_mlp_shapes_and_eval_mode():
    model = SphereMLP(features=(16, 8))
    x = sdata.sample_sphere(jax.random.key(1), 6, 5)
    v = model.init(jax.random.key(0), x)
    assert set(v) == {"params", "batch_stats"}
    out = batch_logits(model, v, x)
    assert out.shape == (6,)
    # eval mode uses running statistics: a single example gives the same logit alone or in a batch
    f = logit_fn(model, v)
    np.testing.assert_allclose(f(x[2]), out[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("d,h", [(10, 10), (20, 35)])
def test_perfect_quadratic_has_all_alphas_in_range(d, h):
    R = 1.3
    v = perfect_quadratic_variables(d, h, R, key=jax.random.key(0))
    p = v["params"]
    M = float(p["w"]) / -float(p["b"]) * np.asarray(p["W"], np.float64).T @ np.asarray(p["W"], np.float64)
    alpha = np.linalg.eigvalsh(M)
    assert alpha.min() >= 1 / R**2 and alpha.max() <= 1.0
    # and therefore no errors on either sphere
    model = QuadraticNet(hidden=h)
    x_in = sdata.sample_sphere(jax.random.key(1), 5000, d, 1.0)
    x_out = sdata.sample_sphere(jax.random.key(2), 5000, d, R)
    assert bool((batch_logits(model, v, x_in) < 0).all())
    assert bool((batch_logits(model, v, x_out) > 0).all())


def test_perfect_quadratic_needs_h_at_least_d():
    with pytest.raises(ValueError, match="h >= d"):
        perfect_quadratic_variables(10, 5, key=jax.random.key(0))
