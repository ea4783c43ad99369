"""Image training: learns Fashion-MNIST, compiles once, resumes exactly, adversarial objectives."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
import theory
from spheres.images import data as idata, models as im, train as itrain
from spheres.images.evaluate import evaluate, padded_chunks
from spheres.results import RunDir
from spheres.sphere.train import NonFiniteError

@pytest.fixture(scope="module")
def fashion():
    return idata.take(idata.load_dataset(idata.SAMPLE), 4000, 1000)


def tiny(n=200, seed=0):
    """Two linearly separable blobs of 28x28 images with labels 0/1 (and copies as 10-class labels)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    y = (np.arange(n) % 2).astype(np.int32)
    x = np.asarray(jax.random.uniform(k1, (n, 28, 28))) * 0.5
    x[y == 1, :14] += 0.5
    return x.astype(np.float32), y


def test_fc10_learns_fashion_and_fgsm_breaks_it(fashion):
    """FC10(1e-4), 3 epochs on 4000 Fashion-MNIST images: test error < 25% (measured ~19%).
    FGSM at ε = 0.25 (clipped to [0, 1]) raises the error above 90% (measured ~100%), with the
    adversarial images inside the box and at L∞ distance <= 0.25."""
    r = im.paper_model("FC10(1e-4)")
    s = itrain.settings_for(r, epochs=3, batch=50, lr=3e-3)
    v = itrain.train_model(r.module, s, fashion.x_train, fashion.y_train, key=jax.random.key(0))
    ev = evaluate(r.module, v, fashion.x_test, fashion.y_test)
    assert ev.error < 0.25
    x = jnp.asarray(fashion.x_test[:500].reshape(500, -1))
    res = attacks.fgsm(im.apply_fn(r.module), x, jnp.asarray(fashion.y_test[:500]), eps=0.25,
                       bounds=(0.0, 1.0), params=v)
    adv = evaluate(r.module, v, np.asarray(res.x_adv), fashion.y_test[:500])
    assert adv.error > 0.9 and adv.error > ev.error + 0.5
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert float(jnp.max(jnp.abs(res.x_adv - x))) <= 0.25 + 1e-6


def test_epoch_compiles_once_and_is_deterministic():
    x, y = tiny()
    r = im.paper_model("FC100-100-10")
    s = itrain.settings_for(r, epochs=3, batch=20, lr=1e-2)
    run = itrain.make_epoch_runner(s)
    state = itrain.create_state(r.module, s, im.init_variables(r.module, jax.random.key(0)))
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    st = state
    for e in range(3):
        st, m = run(st, xs, ys, jax.random.key(1), e)
    assert run.jitted._cache_size() == 1
    assert int(st.step) == 3 * (200 // 20)
    st2 = state
    for e in range(3):
        st2, _ = run(st2, xs, ys, jax.random.key(1), e)
    for a, b in zip(jax.tree_util.tree_leaves(st.params), jax.tree_util.tree_leaves(st2.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    """Maxout with dropout (the step's key matters): 2 epochs, stop, resume to 4 == 4 in one go."""
    x, y = tiny()
    r = im.paper_model("maxout-240", maxout_units=8, maxout_pieces=2)
    s4 = itrain.settings_for(r, epochs=4, batch=20, lr=1e-2)
    full = itrain.train_model(r.module, s4, x, y, key=jax.random.key(3), ckpt_dir=tmp_path / "a")
    s2 = dataclasses.replace(s4, epochs=2)
    itrain.train_model(r.module, s2, x, y, key=jax.random.key(3), ckpt_dir=tmp_path / "b")
    seen = []
    resumed = itrain.train_model(r.module, s4, x, y, key=jax.random.key(3), ckpt_dir=tmp_path / "b",
                                 on_epoch=lambda e, rec: seen.append(e))
    assert seen == [3, 4]       # only the missing epochs ran
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weight_decay_shrinks_weights():
    x, y = tiny()
    norms = []
    for lam in (0.0, 1.0):
        r = im.ModelRecipe("fc", im.SoftmaxRegression(), weight_decay=(lam,))
        s = itrain.settings_for(r, epochs=3, batch=20, lr=1e-2)
        v = itrain.train_model(r.module, s, x, y, key=jax.random.key(0))
        norms.append(float(jnp.sum(v["params"]["dense_0"]["kernel"] ** 2)))
    assert norms[1] < 0.5 * norms[0]


def test_fgsm_objective_equals_closed_form_for_logistic_regression():
    """For a linear model the unclipped FGSM point is the exact worst case, so Goodfellow's
    J(x + ε sign ∇J) equals ζ(ε‖w‖₁ − y(wᵀx + b)) and (Danskin) so do the parameter gradients."""
    x, y = tiny(64)
    m = im.LogisticRegression()
    p = im.init_variables(m, jax.random.key(0))["params"]
    p = jax.tree_util.tree_map(lambda a: a * 30.0, p)     # a non-trivial margin
    base = itrain.TrainSettings(loss="sigmoid", eps=0.1, alpha=0.3)
    fg = dataclasses.replace(base, adversarial="fgsm", clip=False)
    cf = dataclasses.replace(base, adversarial="logistic_closed_form")
    key = jax.random.key(5)
    (v1, _), g1 = jax.value_and_grad(lambda q: itrain.objective(m, fg, q, jnp.asarray(x), jnp.asarray(y), key),
                                     has_aux=True)(p)
    (v2, _), g2 = jax.value_and_grad(lambda q: itrain.objective(m, cf, q, jnp.asarray(x), jnp.asarray(y), key),
                                     has_aux=True)(p)
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # and the closed form really is theory's
    w, b = p["dense_0"]["kernel"][:, 0], p["dense_0"]["bias"][0]
    clean = float(theory.logistic_loss(w, b, x.reshape(64, -1), 2.0 * y - 1).mean())
    adv = float(theory.adversarial_logistic_loss(w, b, x.reshape(64, -1), 2.0 * y - 1, 0.1).mean())
    np.testing.assert_allclose(float(v2), 0.3 * clean + 0.7 * adv, rtol=1e-5)


def test_noise_controls_stay_in_their_sets():
    x, y = tiny(32)
    m = im.SoftmaxRegression()
    p = im.init_variables(m, jax.random.key(0))["params"]
    for kind in ("sign_noise", "uniform_noise", "fgsm"):
        s = itrain.TrainSettings(adversarial=kind, eps=0.2, clip=False)
        xa = np.asarray(itrain._perturb(m, s, p, jnp.asarray(x), jnp.asarray(y), jax.random.key(1)))
        d = np.abs(xa - x)
        assert d.max() <= 0.2 + 1e-6
        if kind != "uniform_noise":
            np.testing.assert_allclose(d[d > 0], 0.2, rtol=1e-5)    # ±ε in every coordinate
        else:
            assert 0.05 < d.mean() < 0.15                         # U(−ε, ε): mean |η| = ε/2
    s = itrain.TrainSettings(adversarial="sign_noise", eps=0.2, clip=True)
    xa = np.asarray(itrain._perturb(m, s, p, jnp.asarray(x), jnp.asarray(y), jax.random.key(1)))
    assert xa.min() >= 0.0 and xa.max() <= 1.0


def test_autoencoder_pretraining_then_frozen_code():
    x, y = tiny(100)
    r = im.paper_model("AE400-10", ae_code=16)
    s = itrain.settings_for(r, epochs=2, batch=20, lr=1e-2)
    losses = []
    v = itrain.train_recipe(r, s, x, y, key=jax.random.key(0),
                            on_epoch=lambda e, rec: losses.append((rec["stage"], rec["loss"])))
    pre = [l for st, l in losses if st == "autoencoder"]
    assert len(pre) == 2 and pre[1] < pre[0]
    # training the classifier stage again from the result leaves encoder and decoder untouched
    clf = dataclasses.replace(s, trainable=("classifier",), epochs=1)
    v2 = itrain.train_model(r.module, clf, x, y, key=jax.random.key(1), variables=v)
    for part in ("encoder", "decoder"):
        for a, b in zip(jax.tree_util.tree_leaves(v["params"][part]), jax.tree_util.tree_leaves(v2["params"][part])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(v["params"]["classifier"]["kernel"]),
                              np.asarray(v2["params"]["classifier"]["kernel"]))


def test_adversarial_pool_is_used_and_refreshed():
    x, y = tiny(100)
    calls = []

    def augment(epoch, variables):
        calls.append(epoch)
        return np.ones((10, 28, 28), np.float32), np.zeros(10, np.int32)

    r = im.paper_model("FC10(1e-4)")
    s = itrain.settings_for(r, epochs=4, batch=10, lr=1e-2)
    steps = []
    itrain.train_model(r.module, s, x, y, key=jax.random.key(0), augment=augment, refresh_every=2,
                       on_epoch=lambda e, rec: steps.append(e))
    assert calls == [0, 2] and steps == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="multiple of refresh_every"):
        itrain.train_model(r.module, s, x, y, key=jax.random.key(0), augment=augment, refresh_every=2,
                           ckpt_dir="unused", ckpt_every=3)


def test_nonfinite_loss_names_the_step():
    x, y = tiny(40)
    x[25] = np.nan
    r = im.paper_model("FC10(1e-4)")
    s = itrain.settings_for(r, epochs=1, batch=40, lr=1e-2)
    with pytest.raises(NonFiniteError, match="step 0"):
        itrain.train_model(r.module, s, x, y, key=jax.random.key(0))


def test_evaluation_and_params_roundtrip(tmp_path):
    x, y = tiny(60)
    m = im.RBFNetwork()
    v = im.init_variables(m, jax.random.key(0))
    ev = evaluate(m, v, x, y, batch=25)     # 25 does not divide 60: padded last chunk
    logits = np.asarray(im.batch_apply_fn(m)(v, jnp.asarray(x)))
    np.testing.assert_allclose(ev.confidence, np.exp(logits.max(1)), rtol=1e-5)
    assert ev.error == pytest.approx(float(np.mean(logits.argmax(1) != y)))
    rd = RunDir.open(tmp_path / "run", "test", {"seed": 0})
    itrain.save_params(rd, "FC100-100-10'", v)
    back = itrain.load_params(rd, "FC100-100-10'")
    assert itrain.load_params(rd, "FC100-100-10") is None          # the prime is part of the name
    for a, b in zip(jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_l1_decay_on_the_first_layers_only(layers):
    """objective = data term + l1·Σ|W| over the first ``l1_layers`` weight matrices in forward order
    (0: all of them); checked against the hand sum on FC(8, 6)-10, whose three kernels differ."""
    x, y = tiny(16)
    m = im.MLP((8, 6))
    p = im.init_variables(m, jax.random.key(3))["params"]
    plain = itrain.TrainSettings()
    dec = itrain.TrainSettings(l1=0.01, l1_layers=layers)
    kernels = [p["dense_0"]["kernel"], p["dense_1"]["kernel"], p["dense_2"]["kernel"]]
    want = 0.01 * sum(float(jnp.sum(jnp.abs(k))) for k in (kernels[:layers] if layers else kernels))
    base, _ = itrain.objective(m, plain, p, x, y, jax.random.key(0))
    got, _ = itrain.objective(m, dec, p, x, y, jax.random.key(0))
    assert float(got - base) == pytest.approx(want, rel=1e-5)      # float32 sums of a few hundred terms


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_l1_layers_is_validated(bad):
    with pytest.raises(ValueError, match="l1_layers must be an int"):
        itrain.TrainSettings(l1=0.1, l1_layers=bad).validate()


def test_padded_chunks_pad_the_last_chunk_with_its_final_row():
    x = np.arange(7 * 2).reshape(7, 2)
    chunks = list(padded_chunks(x, 3))
    assert [k for _, k in chunks] == [3, 3, 1] and all(c.shape == (3, 2) for c, _ in chunks)
    np.testing.assert_array_equal(np.concatenate([c[:k] for c, k in chunks]), x)   # the real rows, in order
    np.testing.assert_array_equal(chunks[-1][0], [[12, 13]] * 3)                  # padding repeats row 6
    assert [k for _, k in padded_chunks(x, 7)] == [7]
    tail, k = list(padded_chunks(x, 5))[-1]                                         # two real rows
    assert k == 2 and tail.shape == (5, 2)
    np.testing.assert_array_equal(tail, [[10, 11], [12, 13], [12, 13], [12, 13], [12, 13]])
    assert [k for _, k in padded_chunks(x, 1)] == [1] * 7                           # batch 1 is allowed
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch must be an int >= 1"):
            list(padded_chunks(x, bad))
