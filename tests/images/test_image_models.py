"""Image models: shapes, per-example logit functions, weight decay, dropout, RBF, conv specs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from spheres.images import layers, models as im, weights

ALL = ["FC10(1e-4)", "FC10(1)", "FC100-100-10", "FC200-200-10", "FC123-456-10", "FC100-100-10'",
       "AE400-10", "softmax", "maxout-240", "rbf", "conv"]


@pytest.fixture(scope="module")
def batch():
    return jax.random.uniform(jax.random.key(0), (3, 28, 28))


@pytest.mark.parametrize("name", ALL + ["logreg"])
def test_shapes_and_per_example_logits(name, batch):
    recipe = im.paper_model(name, maxout_units=16 if name.startswith("maxout") else None,
                            conv_channels=(4, 8))
    v = im.init_variables(recipe.module, jax.random.key(1))
    apply = im.batch_apply_fn(recipe.module)
    out = apply(v, batch)
    flat = apply(v, batch.reshape(3, 784))
    expected = (3,) if name == "logreg" else (3, 10)
    assert out.shape == expected
    np.testing.assert_allclose(out, flat, rtol=1e-5, atol=1e-6)
    f = im.logit_fn(recipe.module, v)
    one = jax.jit(f)(batch[1])
    assert one.shape == expected[1:]
    np.testing.assert_allclose(one, out[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(f)(batch[1].reshape(784)), out[1], rtol=1e-5, atol=1e-5)
    # the same function under vmap and jit
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(batch), out, rtol=1e-5, atol=1e-5)


def test_logit_fns_is_the_one_builder_cached_per_architecture():
    """apply_fn / batch_apply_fn / features_fn are logit_fns' functions; the same architecture gets
    the same objects, so a second evaluation with other parameters does not recompile."""
    m = im.MLP((6, 5))
    fns = im.logit_fns(m)
    assert im.logit_fns(im.MLP((6, 5))) is fns
    assert im.apply_fn(m) is fns.per_example and im.batch_apply_fn(m) is fns.batched
    assert im.features_fn(m) is fns.features
    assert im.apply_fn(im.SoftmaxRegression()) is im.apply_fn(im.SoftmaxRegression())
    assert im.apply_fn(im.MLP((100, 100))) is not im.apply_fn(im.MLP((200, 200)))
    x = jnp.zeros((7, 28, 28))
    fns.batched(im.init_variables(m, jax.random.key(0)), x)
    compiled = fns.batched._cache_size()
    out = fns.batched(im.init_variables(m, jax.random.key(1)), x)
    assert fns.batched._cache_size() == compiled and out.shape == (7, 10)


def test_paper_names():
    assert im.paper_model("FC10(1e-2)").weight_decay == (1e-2,)
    r = im.paper_model("FC123-456-10")
    assert r.module.features == (123, 456) and r.module.activation == "sigmoid"
    assert im.paper_model("AE400-10").pretrain_autoencoder
    assert im.paper_model("maxout-1600").module.units == 1600
    assert im.paper_model("logreg").loss == "sigmoid" and im.paper_model("rbf").loss == "rbf"
    with pytest.raises(ValueError, match="unknown model 'FC7'"):
        im.paper_model("FC7")


def test_per_layer_weight_decay_matches_formula():
    """Szegedy's λ_i Σ W_i² / k_i with k_i the units of layer i; biases not decayed."""
    m = im.MLP((7, 5))
    v = im.init_variables(m, jax.random.key(0))
    p = v["params"]
    lam = (0.1, 0.2, 0.3)
    expect = sum(l * float(jnp.sum(p[f"dense_{i}"]["kernel"] ** 2)) / p[f"dense_{i}"]["kernel"].shape[1]
                 for i, l in enumerate(lam))
    np.testing.assert_allclose(float(weights.weight_decay_penalty(p, lam)), expect, rtol=1e-6)
    assert [n for n, _ in weights.decayed_kernels(p)] == ["dense_0", "dense_1", "dense_2"]
    with pytest.raises(ValueError, match="3 layers"):
        weights.weight_decay_penalty(p, (0.1, 0.2))
    ae = im.init_variables(im.AutoencoderClassifier(6), jax.random.key(0))["params"]
    assert [n for n, _ in weights.decayed_kernels(ae)] == ["encoder", "classifier"]   # decoder not on the path
    conv = im.init_variables(im.ConvNet((2, 3), 4), jax.random.key(0))["params"]
    assert [n for n, _ in weights.decayed_kernels(conv)] == ["conv_0", "conv_1", "dense_0", "dense_1"]
    mx = im.init_variables(im.Maxout(units=4, pieces=2), jax.random.key(0))["params"]
    assert [n for n, _ in weights.decayed_kernels(mx)] == ["maxout_0", "maxout_1", "dense_out"]


def test_maxout_dropout_and_max_over_pieces(batch):
    m = im.Maxout(units=6, pieces=3, layers=1)
    v = im.init_variables(m, jax.random.key(0))
    a = m.apply(v, batch, train=True, rngs={"dropout": jax.random.key(1)})
    b = m.apply(v, batch, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(m.apply(v, batch), m.apply(v, batch))
    # the hidden layer is a max over pieces of an affine map
    k = v["params"]["maxout_0"]
    z = batch.reshape(3, -1) @ k["kernel"] + k["bias"]
    h = z.reshape(3, 6, 3).max(-1)
    expect = h @ v["params"]["dense_out"]["kernel"] + v["params"]["dense_out"]["bias"]
    np.testing.assert_allclose(m.apply(v, batch), expect, rtol=1e-5, atol=1e-5)


def test_rbf_scores_are_log_probabilities(batch):
    m = im.RBFNetwork()
    v = im.init_variables(m, jax.random.key(0))
    s = m.apply(v, batch)
    assert np.all(np.asarray(s) <= 0)
    p = np.asarray(im.class_probabilities(m, s))
    np.testing.assert_allclose(p, np.exp(np.asarray(s)), rtol=1e-6)
    mu, beta = v["params"]["mu"], jnp.exp(v["params"]["log_beta"])
    expect = -jnp.sum(beta[None] * (batch.reshape(3, 1, 784) - mu[None]) ** 2, -1)
    np.testing.assert_allclose(s, expect, rtol=1e-5)
    # far from every centre the RBF is not confident about anything (Goodfellow §8)
    far = m.apply(v, 10.0 * jax.random.normal(jax.random.key(3), (4, 784)))
    assert np.all(np.asarray(im.class_probabilities(m, far)) < 1e-3)


def test_logistic_probabilities(batch):
    m = im.LogisticRegression()
    v = im.init_variables(m, jax.random.key(0))
    z = m.apply(v, batch)
    p = np.asarray(im.class_probabilities(m, z))
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(im.predict_classes(z)), (np.asarray(z) > 0).astype(int))


def test_conv_specs_match_the_layers():
    """conv_specs (input size, stride, padding) give theory.conv_lipschitz the layer the model
    applies: the bound is >= the power-iteration norm of the actual (bias-free) Flax layer and
    within 25% of it (zero padding makes the theory value an upper bound, not the exact norm)."""
    jax.config.update("jax_enable_x64", True)
    try:
        m = im.ConvNet((3, 4), 8)
        v = im.init_variables(m, jax.random.key(0))
        specs = m.conv_specs()
        import flax.linen as nn
        for name, cin, (shape, stride, padding) in (("conv_0", 1, specs["conv_0"]), ("conv_1", 3, specs["conv_1"])):
            k = jnp.asarray(np.asarray(v["params"][name]["kernel"], np.float64))
            layer = nn.Conv(k.shape[-1], (5, 5), strides=stride, padding=padding, use_bias=False, dtype=jnp.float64,
                            param_dtype=jnp.float64)
            lin = lambda x, k=k, layer=layer: layer.apply({"params": {"kernel": k}}, x[None])[0]  # noqa: E731
            measured = float(theory.operator_norm_power_iteration(lin, (*shape, cin), key=jax.random.key(1),
                                                                 num_iters=300))
            bound = float(theory.conv_lipschitz(k, stride=stride, input_shape=shape, padding=padding))
            assert measured <= bound * (1 + 1e-6), (name, measured, bound)
            assert bound <= 1.25 * measured, (name, measured, bound)
        # the layer input shapes are the real ones
        _, st = m.apply(v, jnp.zeros((1, 28, 28)), capture_intermediates=True, mutable=["intermediates"])
        assert st["intermediates"]["conv_0"]["__call__"][0].shape[1:3] == (28, 28)
        assert st["intermediates"]["conv_1"]["__call__"][0].shape[1:3] == (7, 7)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("size,cin,cout,stride,kernel", [(28, 1, 4, 1, 5), (14, 3, 5, 2, 5), (9, 2, 2, 3, 4)])
def test_conv2d_is_nn_conv(size, cin, cout, stride, kernel):
    """`Conv2D` (im2col) against ``nn.Conv(..., padding="SAME")`` in float64: same initial
    parameters, and outputs and gradients (kernel, bias, input) equal to 1e-12 (round-off of sums
    of ~100 terms): ConvNet's two layers, and an odd size with stride 3 and an even kernel (whose
    "SAME" padding is asymmetric)."""
    import flax.linen as nn

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, size, size, cin), jnp.float64)
        ours = layers.Conv2D(cout, (kernel, kernel), stride=stride)
        ref = nn.Conv(cout, (kernel, kernel), strides=stride, padding="SAME", param_dtype=jnp.float64)
        v_ref = ref.init(jax.random.key(1), x)
        v_ours = ours.init(jax.random.key(1), x)
        assert jax.tree.structure(v_ours) == jax.tree.structure(v_ref)
        for a, b in zip(jax.tree.leaves(v_ours), jax.tree.leaves(v_ref)):
            np.testing.assert_array_equal(a, b)  # the same initial values
        v = jax.tree.map(lambda a: a + 0.1, v_ref)  # a nonzero bias too
        # jitted: one compile per function (op-by-op dispatch took about twice as long here)
        out, out_ref = jax.jit(ours.apply)(v, x), jax.jit(ref.apply)(v, x)
        assert out.shape == out_ref.shape
        np.testing.assert_allclose(out, out_ref, rtol=0, atol=1e-12)
        loss = lambda m: lambda v, x: jnp.sum(jnp.sin(m.apply(v, x)))  # noqa: E731
        g, g_ref = (jax.jit(jax.grad(loss(m), (0, 1)))(v, x) for m in (ours, ref))
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_im2col_validates():
    """Wrong rank, kernel or stride get a clear error (not one from inside ``jnp.pad``)."""
    h = jnp.zeros((2, 8, 8, 3))
    for args, match in (((h[0], (3, 3), 1), r"\(B, H, W, C\)"), ((h, 3, 1), "pair of positive"),
                        ((h, (3, 0), 1), "pair of positive"), ((h, (3, 3), 0), "stride"),
                        ((h, (3, 3), 1.5), "stride")):
        with pytest.raises(ValueError, match=match):
            layers.im2col(*args)
    assert layers.im2col(h, (3, 3), 2).shape == (2, 4, 4, 27)


def test_max_pool_2x2_is_nn_max_pool():
    """Values equal ``nn.max_pool`` exactly; with no ties (continuous input) the gradient does too;
    a tied window splits its gradient equally; odd sizes are refused."""
    import flax.linen as nn

    h = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
    ref = lambda h: nn.max_pool(h, (2, 2), strides=(2, 2))  # noqa: E731
    np.testing.assert_array_equal(layers.max_pool_2x2(h), ref(h))
    w = jax.random.normal(jax.random.key(1), (2, 3, 4, 3))
    g = jax.grad(lambda h: jnp.sum(w * layers.max_pool_2x2(h)))(h)
    np.testing.assert_array_equal(g, jax.grad(lambda h: jnp.sum(w * ref(h)))(h))
    tied = jax.grad(lambda h: jnp.sum(layers.max_pool_2x2(h)))(jnp.zeros((1, 2, 2, 1)))
    np.testing.assert_array_equal(tied, np.full((1, 2, 2, 1), 0.25))
    with pytest.raises(ValueError, match="even height and width"):
        layers.max_pool_2x2(jnp.zeros((1, 5, 4, 1)))


def test_convnet_conv_impls_agree(batch):
    """ConvNet's default `Conv2D` / `max_pool_2x2` and ``conv_impl="xla"`` (``nn.Conv`` /
    ``nn.max_pool``) share their initial variables and give the same logits (float32 round-off:
    1e-5); an unknown implementation is refused."""
    m, ref = im.ConvNet((4, 6), 12), im.ConvNet((4, 6), 12, conv_impl="xla")
    v = im.init_variables(m, jax.random.key(0))
    v_ref = im.init_variables(ref, jax.random.key(0))
    assert jax.tree.structure(v) == jax.tree.structure(v_ref)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v_ref)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(m.apply(v, batch), ref.apply(v, batch), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="conv_impl"):
        im.ConvNet((4, 6), 12, conv_impl="cudnn").apply(v, batch)


def test_features_are_the_last_hidden_layer(batch):
    m = im.MLP((6, 5))
    v = im.init_variables(m, jax.random.key(0))
    f = im.features_fn(m)(v, batch)
    assert f.shape == (3, 5)
    out = f @ v["params"]["dense_2"]["kernel"] + v["params"]["dense_2"]["bias"]
    np.testing.assert_allclose(out, m.apply(v, batch), rtol=1e-5, atol=1e-6)
