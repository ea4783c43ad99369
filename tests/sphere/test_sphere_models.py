"""Models: the quadratic net equals its formula; the perfect-initialisation helper is perfect."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spheres.sphere import data as sdata
from spheres.sphere.models import QuadraticNet, SphereMLP, batch_logits, logit_fn, perfect_quadratic_variables


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


@pytest.mark.parametrize("B,rows", [(7, 3), (9, 3), (10, 4), (5, 5), (5, 8), (2048, 2048), (2049, 2048)])
def test_batch_logits_blocks_agree_with_one_call(B, rows):
    """Blocked evaluation (lax.map over ⌈B/rows⌉ equal blocks, zero-padded) gives the one-call
    logits: rows are independent in eval mode. Tolerance 1e-6 relative (float32; GEMMs of a
    different height may sum in another order), bitwise in practice on CPU."""
    model = SphereMLP(features=(16, 8))
    x = sdata.sample_sphere(jax.random.key(1), B, 5)
    v = model.init(jax.random.key(0), x)
    whole = batch_logits(model, v, x, block=None)
    blocked = batch_logits(model, v, x, block=rows)
    jitted = jax.jit(lambda v, x: batch_logits(model, v, x, block=rows))(v, x)
    assert blocked.shape == whole.shape == (B,)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jitted, whole, rtol=1e-6, atol=1e-7)


def test_map_row_blocks_pytree_and_padding():
    from spheres.sharding import map_row_blocks

    x = jnp.arange(10.0).reshape(10, 1)
    calls = []

    def f(xb):
        calls.append(xb.shape)
        return {"twice": 2 * xb[:, 0], "rows": xb}

    out = map_row_blocks(f, x, 4, groups=1)  # 3 blocks of 4 rows (2 padding rows), one traced shape
    assert calls == [(4, 1)]
    np.testing.assert_array_equal(out["twice"], 2 * np.arange(10.0))
    np.testing.assert_array_equal(out["rows"], np.asarray(x))
    calls.clear()
    out = map_row_blocks(f, x, 2, groups=2)  # 2 groups of 3 runs of 2 rows: blocks of 4 rows
    assert calls == [(4, 1)]
    np.testing.assert_array_equal(out["rows"], np.asarray(x))   # the original row order
    assert map_row_blocks(f, x, None)["rows"].shape == (10, 1)
    assert map_row_blocks(f, x, 5, groups=2)["rows"].shape == (10, 1)   # fits: one call
    for bad in (dict(max_rows=0), dict(max_rows=2.5), dict(max_rows=3, groups=0)):
        with pytest.raises(ValueError, match="must be a positive int"):
            map_row_blocks(f, x, bad.pop("max_rows"), **bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "big"])
def test_batch_logits_rejects_bad_block(bad):
    model = SphereMLP(features=(4,))
    x = jnp.ones((3, 2))
    v = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="block must be a positive int"):
        batch_logits(model, v, x, block=bad)
