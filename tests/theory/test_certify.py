"""theory.certify: CROWN certified L2 radii of ReLU + BatchNorm nets (soundness against sampling and
attacks, exactness on linear nets, BatchNorm folding, jit == vmap, float32 and float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import attacks
from spheres.sphere.models import SphereMLP
from theory import certify as cf

pytestmark = pytest.mark.usefixtures("float64")
R = 1.3


def _spheres(key, n, d, dtype=jnp.float64):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n, d), dtype)
    y = jax.random.bernoulli(ky, 0.5, (n,)).astype(jnp.int32)
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True) * jnp.where(y == 1, R, 1.0)[:, None].astype(dtype)
    return x, y


def _train_sphere_mlp(d, widths, steps, seed=0, dtype=jnp.float64):
    """A small SphereMLP trained briefly on the two spheres (a net with a real boundary)."""
    model = SphereMLP(tuple(widths), momentum=0.9)
    x0, _ = _spheres(jax.random.key(seed), 8, d, dtype)
    variables = jax.tree.map(lambda a: a.astype(dtype), model.init(jax.random.key(seed + 1), x0))
    params, stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    @jax.jit
    def step(carry, key):
        params, stats, opt = carry
        x, y = _spheres(key, 128, d, dtype)

        def loss(p):
            logits, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
            return optax.sigmoid_binary_cross_entropy(logits, y.astype(logits.dtype)).mean(), upd

        (_, upd), g = jax.value_and_grad(loss, has_aux=True)(params)
        upd_p, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, upd_p), upd["batch_stats"], opt), None

    keys = jax.random.split(jax.random.key(seed + 2), steps)
    (params, stats, _), _ = jax.lax.scan(step, (params, stats, opt), keys)
    return model, {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module")
def net2():
    return _train_sphere_mlp(2, (16, 16), 400, seed=0)


@pytest.fixture(scope="module")
def net3():
    return _train_sphere_mlp(3, (24, 24), 400, seed=10)


# ----------------------------------------------------------------------------------- construction


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_batchnorm_folding_equals_the_module(dtype):
    model = SphereMLP((7, 5, 6), dtype=dtype)
    x = jax.random.normal(jax.random.key(0), (20, 4), dtype)
    v = model.init(jax.random.key(1), x)
    k = iter(jax.random.split(jax.random.key(2), 32))
    # non-trivial running statistics and affine BatchNorm parameters
    v = {"params": jax.tree.map(lambda a: (a + 0.5 * jax.random.normal(next(k), a.shape)).astype(dtype), v["params"]),
         "batch_stats": jax.tree.map(lambda a: (a + jax.random.uniform(next(k), a.shape)).astype(dtype), v["batch_stats"])}
    layers = cf.layers_from_sphere_mlp(v)
    assert [W.shape for W, _ in layers] == [(7, 4), (5, 7), (6, 5), (1, 6)]
    ref = model.apply(v, x)
    out = cf.forward(layers, x)[:, 0]
    # folding reassociates the BatchNorm arithmetic: rounding of the dtype
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    assert out.dtype == dtype
    with pytest.raises(ValueError, match="batch_stats"):
        cf.layers_from_sphere_mlp({"params": v["params"]})


def test_validation_errors():
    layers = [(jnp.ones((3, 2)), jnp.zeros(3)), (jnp.ones((1, 3)), jnp.zeros(1))]
    x = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="shape"):
        cf.certify_l2(layers, jnp.ones((4, 5)), on_manifold=False)
    with pytest.raises(ValueError, match="one output"):
        cf.certify_l2([(jnp.ones((2, 2)), jnp.zeros(2))], x, on_manifold=False)
    with pytest.raises(ValueError, match="chained"):
        cf.certify_l2([(jnp.ones((3, 2)), jnp.zeros(3)), (jnp.ones((1, 4)), jnp.zeros(1))], x, on_manifold=False)
    with pytest.raises(ValueError, match="labels"):
        cf.certify_l2(layers, x, y=[0, 1, 2, 0], on_manifold=False)
    with pytest.raises(ValueError, match="origin"):
        cf.certify_l2(layers, jnp.zeros((1, 2)), on_manifold=True)
    with pytest.raises(ValueError, match="steps"):
        cf.certify_l2(layers, x, on_manifold=False, steps=0)


@pytest.mark.parametrize("name,value", [("max_radius", np.ones(3)), ("max_radius", np.ones(1)),
                                        ("max_radius", np.ones(5)), ("init", np.ones((4, 1))),
                                        ("init", np.ones((1, 4)))])
def test_per_example_arguments_are_a_scalar_or_one_per_point(name, value):
    """Four points: a scalar or shape (4,) only; (1,) is not broadcast silently."""
    layers = [(jnp.ones((3, 2)), jnp.zeros(3)), (jnp.ones((1, 3)), jnp.zeros(1))]
    with pytest.raises(ValueError, match=rf"{name} must be a scalar or shape \(4,\)"):
        cf.certify_l2(layers, jnp.ones((4, 2)), on_manifold=False, **{name: value})
    with pytest.raises(ValueError, match=r"eps must be a scalar or shape \(4,\)"):
        cf.logit_bounds(layers, jnp.ones((4, 2)), value)
    with pytest.raises(ValueError, match="max_radius must be >= 0"):
        cf.certify_l2(layers, jnp.ones((4, 2)), on_manifold=False, max_radius=-1.0)
    r = cf.certify_l2(layers, jnp.ones((4, 2)), on_manifold=False, max_radius=np.full(4, 0.5))
    assert r.radius.shape == (4,)


def test_sphere_mlp_layers_must_pair_dense_and_batchnorm():
    """L hidden Dense layers need L BatchNorms; one Dense too many or too few is refused."""
    model = SphereMLP((4, 4))
    v = model.init(jax.random.key(0), jnp.ones((2, 3)))
    assert len(cf.layers_from_sphere_mlp(v)) == 3
    extra = {"params": {**v["params"], "Dense_3": v["params"]["Dense_2"]}, "batch_stats": v["batch_stats"]}
    missing = {"params": {k: p for k, p in v["params"].items() if k != "Dense_2"}, "batch_stats": v["batch_stats"]}
    for bad in (extra, missing):
        with pytest.raises(ValueError, match="expected Dense_0..Dense_L with BatchNorm_0..BatchNorm_"):
            cf.layers_from_sphere_mlp(bad)
    with pytest.raises(ValueError, match="expected SphereMLP variables"):
        cf.layers_from_sphere_mlp({"params": v["params"]})


def test_a_constant_network_is_certified_to_the_search_limit():
    """Zero weights: the logit is its bias everywhere, so no radius changes the class; the certificate
    is the search limit (the ball's ρ* = +∞ is capped by max_radius; on the sphere, its diameter 2‖x‖,
    the whole sphere), and 0 for a misclassified point."""
    layers = [(jnp.zeros((3, 2)), jnp.ones(3)), (jnp.ones((1, 3)), jnp.full(1, -0.5))]   # logit 2.5
    x = jnp.asarray([[0.3, 0.4], [1.0, -2.0]])
    for on, limit in ((False, [7.0, 7.0]), (True, [1.0, 2 * math.sqrt(5.0)])):
        r = cf.certify_l2(layers, x, on_manifold=on, max_radius=7.0)
        np.testing.assert_allclose(r.radius, limit, rtol=1e-15)
        assert np.all(np.asarray(r.predicted) == 1)
        r = cf.certify_l2(layers, x, y=[0, 1], on_manifold=on, max_radius=7.0)
        np.testing.assert_allclose(r.radius, [0.0, limit[1]], rtol=1e-15)


# ------------------------------------------------------------------------------------- exactness


def _great_circle(x, w, theta):
    """Points ``(len(theta), d)`` at angles ``theta`` from ``x`` on the great circle of the sphere
    ``‖x̂‖ = ‖x‖`` in the plane of ``x`` and ``w``, turning towards ``w``."""
    r = np.linalg.norm(x)
    u = x / r
    v = w - (w @ u) * u
    v /= np.linalg.norm(v)
    return r * (np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v)


def test_linear_net_certificate_is_the_exact_distance():
    rng = np.random.default_rng(0)
    d = 6
    w, b = rng.standard_normal((1, d)), rng.standard_normal(1) * 0.3
    x = rng.standard_normal((40, d))
    res = cf.certify_l2([(w, b)], x, on_manifold=False)
    exact = np.abs(x @ w[0] + b[0]) / np.linalg.norm(w)
    # a linear bound is exact: closed form, float64 rounding
    np.testing.assert_allclose(res.radius, exact, rtol=1e-12)
    # on the sphere: the nearest sphere point with w·x̂ + b = 0 lies in the plane of x and w; sample
    # that great circle finely and refine to get the chord to the boundary
    on = cf.certify_l2([(w, b)], x, on_manifold=True)
    theta = np.linspace(-np.pi, np.pi, 200_001)
    for i in range(10):
        r = np.linalg.norm(x[i])
        pts = _great_circle(x[i], w[0], theta)
        g = pts @ w[0] + b[0]
        err = np.sign(g) != np.sign(x[i] @ w[0] + b[0])
        if not err.any():
            assert float(on.radius[i]) == pytest.approx(2 * r, rel=1e-12)   # capped at the diameter
            continue
        ref = np.min(2 * r * np.abs(np.sin(theta[err] / 2)))
        # grid step 3e-5 rad of angle: the chord to the first error is within r·3e-5 of the crossing
        assert float(on.radius[i]) == pytest.approx(ref, abs=4e-5 * r)
        assert float(on.radius[i]) <= ref + 1e-12                          # and never beyond it


@pytest.mark.parametrize("eps", [0.05, 0.4, 1.2, 2.0])
def test_cap_bounds_of_a_linear_logit_are_its_extremes_on_the_cap(eps):
    """For one affine layer the bound over the cap {‖x̂‖ = r, ‖x̂ − x‖ <= ε} is the exact minimum and
    maximum of w·x̂ + b there. Reference: the extremes lie on the great circle through x in the plane
    of x and w (the component of x̂ orthogonal to that plane only shortens its projection on w), sampled
    at 200,001 angles within the cap's half-angle 2 arcsin(ε/2r): the bound is at most the sampled
    minimum and within one grid step (r‖w‖·3e-5·θ_ε) of it, and the same for the maximum."""
    rng = np.random.default_rng(3)
    d = 5
    w, b = rng.standard_normal((1, d)), rng.standard_normal(1)
    x = rng.standard_normal((8, d))
    lo, hi = (np.asarray(v) for v in cf.logit_bounds([(w, b)], x, eps, on_manifold=True))
    for i in range(x.shape[0]):
        r = np.linalg.norm(x[i])
        half = 2 * np.arcsin(min(eps / (2 * r), 1.0))
        theta = np.linspace(-half, half, 200_001)
        g = _great_circle(x[i], w[0], theta) @ w[0] + b[0]
        step = r * np.linalg.norm(w) * (2 * half / 200_000)
        assert g.min() - step <= lo[i] <= g.min() + 1e-12
        assert g.max() - 1e-12 <= hi[i] <= g.max() + step
    # the ball's bound is the linear closed form, and the cap is inside the ball
    lo_b, hi_b = (np.asarray(v) for v in cf.logit_bounds([(w, b)], x, eps))
    np.testing.assert_allclose(lo_b, x @ w[0] + b[0] - eps * np.linalg.norm(w), rtol=1e-12)
    assert np.all(lo_b <= lo + 1e-12) and np.all(hi <= hi_b + 1e-12)


def test_bounds_contain_the_logit_on_random_points(net3):
    model, v = net3
    layers = cf.layers_from_sphere_mlp(v)
    x, _ = _spheres(jax.random.key(5), 16, 3)
    eps = 0.3
    for on in (False, True):
        lo, up = cf.logit_bounds(layers, x, eps, on_manifold=on)
        key = jax.random.key(6)
        dirs = jax.random.normal(key, (16, 4000, 3))
        rad = eps * jax.random.uniform(jax.random.key(7), (16, 4000, 1)) ** (1 / 3)
        pts = x[:, None] + rad * dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
        if on:   # on the sphere: rescale, keeping those still within eps (chord)
            pts = pts / jnp.linalg.norm(pts, axis=-1, keepdims=True) * jnp.linalg.norm(x, axis=-1)[:, None, None]
        inside = jnp.linalg.norm(pts - x[:, None], axis=-1) <= eps
        f = model.apply(v, pts.reshape(-1, 3)).reshape(16, 4000)
        # rounding of float64 bound arithmetic only
        assert bool(jnp.all(jnp.where(inside, f >= lo[:, None] - 1e-12, True)))
        assert bool(jnp.all(jnp.where(inside, f <= up[:, None] + 1e-12, True)))
    lo_b, _ = cf.logit_bounds(layers, x, eps, on_manifold=False)
    lo_c, _ = cf.logit_bounds(layers, x, eps, on_manifold=True)
    assert bool(jnp.all(lo_c >= lo_b - 1e-12))          # the cap is inside the ball: same lines, tighter


# -------------------------------------------------------------------------------------- soundness


def _logits(model, v, pts):
    return np.concatenate([np.asarray(model.apply(v, jnp.asarray(c))) for c in np.array_split(pts, max(1, len(pts) // 500_000))])


def test_certificate_never_exceeds_dense_sampling_d2(net2):
    """Every sampled error is an error of the network, so the nearest one found bounds the true
    distance from above: the certificate must not exceed it (a one-sided check, whatever the grid
    step). Off the manifold: a 3e-3 grid of [−3, 3]²; on it: the circle ‖x̂‖ = ‖x‖ at 2e-5 rad."""
    model, v = net2
    layers = cf.layers_from_sphere_mlp(v)
    x, _ = _spheres(jax.random.key(3), 12, 2)
    g = np.linspace(-3, 3, 2001)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    grid_pos = _logits(model, v, grid) > 0
    th = np.linspace(0, 2 * np.pi, 314_160)
    circle = np.stack([np.cos(th), np.sin(th)], 1)
    off = cf.certify_l2(layers, x, on_manifold=False)
    on = cf.certify_l2(layers, x, on_manifold=True)
    for i in range(12):
        xi = np.asarray(x[i])
        pos = float(model.apply(v, x[i][None])[0]) > 0
        err = grid_pos != pos
        if err.any():
            # the sampled errors are the network's own: float64 rounding of its logit is the only slack
            assert float(off.radius[i]) <= np.min(np.linalg.norm(grid[err] - xi, axis=1)) + 1e-9
        pts = np.linalg.norm(xi) * circle
        err = (_logits(model, v, pts) > 0) != pos
        if err.any():
            assert float(on.radius[i]) <= np.min(np.linalg.norm(pts[err] - xi, axis=1)) + 1e-9
    assert float(jnp.mean(off.radius)) > 0 and float(jnp.mean(on.radius)) > 0     # not vacuous


def test_certificate_never_exceeds_dense_sampling_d3(net3):
    model, v = net3
    layers = cf.layers_from_sphere_mlp(v)
    x, _ = _spheres(jax.random.key(4), 8, 3)
    res = cf.certify_l2(layers, x, on_manifold=True)
    th, ph = np.meshgrid(np.linspace(0, np.pi, 701), np.linspace(0, 2 * np.pi, 1401), indexing="ij")
    u = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    for i in range(8):
        r = float(np.linalg.norm(x[i]))
        pts = r * u
        f = _logits(model, v, pts)
        f0 = float(model.apply(v, x[i][None])[0])
        err = (f > 0) != (f0 > 0)
        if err.any():
            found = np.min(np.linalg.norm(pts[err] - np.asarray(x[i]), axis=1))
            assert float(res.radius[i]) <= found + 1e-9               # the network's own rounding
    # cap ⊂ ball: at every ε the cap's bound is at least the ball's, so the fixed point is larger;
    # 16 steps close both brackets (relative width < 1e-6) so that the ordering shows in the radii
    on16, off16 = (cf.certify_l2(layers, x, on_manifold=m, steps=16) for m in (True, False))
    assert bool(jnp.all(on16.radius >= off16.radius))


def test_certificate_never_exceeds_attacks():
    d = 10
    model, v = _train_sphere_mlp(d, (32, 32), 300, seed=20)
    layers = cf.layers_from_sphere_mlp(v)
    x, y = _spheres(jax.random.key(8), 64, d)
    f = lambda p: model.apply(v, p[None])[0]
    off = cf.certify_l2(layers, x, y, on_manifold=False)
    on = cf.certify_l2(layers, x, y, on_manifold=True)
    nl = attacks.nearest_error_l2(f, x, y, max_radius=3.0)
    sp = attacks.sphere_pgd(f, x, y, step_size=0.01, num_steps=500, mode="nearest")
    # an attack's point is an error by the network's own float64 logit: 1e-9 covers its rounding
    for res, att in ((off, nl), (on, sp)):
        ok = np.asarray(att.success)
        assert ok.sum() >= 10
        assert np.all(np.asarray(res.radius)[ok] <= np.asarray(att.distance)[ok] + 1e-9)
    on16, off16 = (cf.certify_l2(layers, x, y, on_manifold=m, steps=16) for m in (True, False))
    assert bool(jnp.all(on16.radius >= off16.radius))           # closed brackets (see the d = 3 test)
    assert bool(jnp.all(jnp.where(off.already_error, off.radius == 0, True)))      # errors certify 0


# ----------------------------------------------------------------------- jit, vmap, dtypes, search


def test_jit_vmap_and_dtypes(net3):
    model, v = net3
    layers = cf.layers_from_sphere_mlp(v)
    x, y = _spheres(jax.random.key(9), 10, 3)
    for on in (False, True):
        batch = cf.certify_l2(layers, x, y, on_manifold=on)
        jitted = jax.jit(lambda l, a, b: cf.certify_l2(l, a, b, on_manifold=on))(layers, x, y)
        vm = jax.vmap(lambda a, b: cf.certify_l2(layers, a[None], b[None], on_manifold=on).radius)(x, y)
        blocked = cf.certify_l2(layers, x, y, on_manifold=on, block=3)
        # the same computation up to XLA's float64 reduction order
        np.testing.assert_allclose(jitted.radius, batch.radius, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(vm[:, 0], batch.radius, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(blocked.radius, batch.radius, rtol=1e-9, atol=1e-12)
        l32 = [(W.astype(jnp.float32), b.astype(jnp.float32)) for W, b in layers]
        r32 = cf.certify_l2(l32, x.astype(jnp.float32), y, on_manifold=on)
        assert r32.radius.dtype == jnp.float32
        # float32 rounding of the bounds (~1e-6 relative), amplified by the search near tight steps
        np.testing.assert_allclose(r32.radius, batch.radius, rtol=1e-3, atol=1e-5)
    size = cf._certify_batch._cache_size()
    cf.certify_l2(layers, x + 0.01, y, on_manifold=True)
    assert cf._certify_batch._cache_size() == size


def test_more_steps_never_lower_and_bracket_is_consistent(net3):
    model, v = net3
    layers = cf.layers_from_sphere_mlp(v)
    x, y = _spheres(jax.random.key(11), 16, 3)
    few = cf.certify_l2(layers, x, y, on_manifold=True, steps=2)
    many = cf.certify_l2(layers, x, y, on_manifold=True, steps=12)
    assert bool(jnp.all(many.radius >= few.radius * (1 - 1e-12)))
    assert bool(jnp.all(many.radius <= many.upper + 1e-12))
    # misclassified points (with labels) are certified 0
    wrong = cf.certify_l2(layers, x, 1 - many.predicted, on_manifold=True)
    assert bool(jnp.all(wrong.radius == 0)) and bool(jnp.all(wrong.already_error))


def test_warm_start_changes_only_the_search(net3):
    """``init`` starts the search at a given radius: every radius is still one of the search's
    ``min(ε, ρ*(ε))``, so it never exceeds the supremum that a 16-step cold search reaches (to its
    1e-6 relative bracket width), and from the cold median 4 warm steps get most of the way."""
    model, v = net3
    layers = cf.layers_from_sphere_mlp(v)
    x, y = _spheres(jax.random.key(12), 24, 3)
    for on in (True, False):
        cold = np.asarray(cf.certify_l2(layers, x, y, on_manifold=on, steps=16).radius)
        init = float(np.median(cold[cold > 0]))
        warm = np.asarray(cf.certify_l2(layers, x, y, on_manifold=on, steps=4, init=init).radius)
        assert np.all(warm <= cold * (1 + 1e-6) + 1e-12)
        near = np.abs(np.log(cold[cold > 0] / init)) < np.log(1.15)      # within one warm step of init
        assert near.any() and np.all(warm[cold > 0][near] >= 0.9 * cold[cold > 0][near])
    with pytest.raises(ValueError, match="init"):
        cf.certify_l2(layers, x, y, on_manifold=True, init=-1.0)
