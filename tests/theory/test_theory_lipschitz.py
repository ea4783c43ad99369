"""theory.lipschitz: the DFT conv bound against the explicit operator (power iteration and dense SVD)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import theory


pytestmark = pytest.mark.usefixtures("float64")


def circular_conv_op(kernel, stride):
    """The explicit circular strided conv: wrap-pad ((k−1)//2, k//2) then a VALID strided correlation."""
    kh, kw = kernel.shape[:2]
    s = (stride, stride) if isinstance(stride, int) else stride

    def f(x):                                             # x (H, W, cin)
        xp = jnp.pad(x, (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)), mode="wrap")
        return lax.conv_general_dilated(xp[None], kernel, s, "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
    return f


def zero_padded_conv_op(kernel, stride, padding):
    s = (stride, stride) if isinstance(stride, int) else stride
    return lambda x: lax.conv_general_dilated(x[None], kernel, s, padding,
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]


def outputs_and_anchor(n, k, s, padding):
    """Output count and anchor ``lo`` along one axis (output i reads inputs s·i + u − lo); SAME is
    lax's convention (the smaller half of the padding before)."""
    if padding == "CIRCULAR":
        return n // s, (k - 1) // 2
    if padding == "SAME":
        out = -(-n // s)
        return out, max((out - 1) * s + k - n, 0) // 2
    return (n - k) // s + 1, 0


def conv_matrix(kernel, stride, H, W, padding="CIRCULAR"):
    """The layer as an explicit matrix, built in NumPy from the definition of a strided correlation
    ``y[i, j, o] = Σ_{u,v,c} x[s_h i + u − lo_h, s_w j + v − lo_w, c] K[u, v, c, o]`` with circular
    indices (CIRCULAR) or zeros outside the input (SAME / VALID, lax's padding convention)."""
    K = np.asarray(kernel)
    kh, kw, cin, cout = K.shape
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    (oh, lo_h), (ow, lo_w) = outputs_and_anchor(H, kh, sh, padding), outputs_and_anchor(W, kw, sw, padding)
    M = np.zeros((oh, ow, cout, H, W, cin))
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                for v in range(kw):
                    r, c = sh * i + u - lo_h, sw * j + v - lo_w
                    if padding == "CIRCULAR":
                        r, c = r % H, c % W
                    elif not (0 <= r < H and 0 <= c < W):
                        continue
                    M[i, j, :, r, c, :] += K[u, v].T
    return M.reshape(oh * ow * cout, H * W * cin)


def matrix_norm(M):
    return float(np.linalg.norm(M, 2))


def test_numpy_matrices_are_the_jax_operators():
    kernel = np.random.default_rng(0).standard_normal((3, 3, 2, 3))
    x = np.random.default_rng(1).standard_normal((8, 8, 2))
    for stride in (1, 2):
        # tolerance: float64 rounding of the same sums
        np.testing.assert_allclose(np.asarray(circular_conv_op(jnp.asarray(kernel), stride)(x)).ravel(),
                                   conv_matrix(kernel, stride, 8, 8) @ x.ravel(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            np.asarray(zero_padded_conv_op(jnp.asarray(kernel), stride, "SAME")(x)).ravel(),
            conv_matrix(kernel, stride, 8, 8, "SAME") @ x.ravel(), rtol=1e-12, atol=1e-12)


def test_dense_lipschitz():
    W = np.random.default_rng(0).standard_normal((7, 4))
    ref = np.linalg.svd(W, compute_uv=False)[0]
    assert float(theory.dense_lipschitz(W)) == pytest.approx(ref, rel=1e-13)   # tolerance: rounding
    assert float(theory.dense_lipschitz(W.T)) == pytest.approx(ref, rel=1e-13)
    assert theory.dense_lipschitz(np.stack([W, 2 * W])).shape == (2,)


CONV_CASES = [  # (H, W, kh, kw, cin, cout, stride)
    (8, 8, 3, 3, 1, 1, 1), (8, 8, 3, 3, 2, 3, 1), (8, 8, 3, 3, 3, 2, 2), (8, 6, 3, 3, 2, 2, 2),
    (8, 8, 5, 5, 1, 4, 2), (8, 8, 4, 4, 4, 4, 2), (6, 6, 3, 3, 2, 3, 3), (8, 4, 3, 2, 2, 2, (2, 1)),
]


@pytest.mark.parametrize("H,W,kh,kw,cin,cout,stride", CONV_CASES)
def test_conv_lipschitz_circular_is_exact(H, W, kh, kw, cin, cout, stride):
    kernel = np.random.default_rng(H * 100 + kh * 10 + cin + cout).standard_normal((kh, kw, cin, cout))
    bound = float(theory.conv_lipschitz(kernel, stride=stride, input_shape=(H, W)))
    # dense SVD of the explicit operator matrix — tolerance: float64 rounding (observed ~1e-15)
    assert bound == pytest.approx(matrix_norm(conv_matrix(kernel, stride, H, W)), rel=1e-12)


POWER_CASES = [(8, 8, 3, 3, 1, 1, 1), (8, 8, 3, 3, 2, 3, 1), (8, 8, 3, 3, 3, 2, 2), (8, 8, 5, 5, 1, 4, 2)]


@pytest.mark.parametrize("H,W,kh,kw,cin,cout,stride", POWER_CASES)
def test_conv_lipschitz_matches_power_iteration(H, W, kh, kw, cin, cout, stride):
    kernel = jnp.asarray(np.random.default_rng(H * 100 + kh * 10 + cin + cout).standard_normal((kh, kw, cin, cout)))
    bound = float(theory.conv_lipschitz(kernel, stride=stride, input_shape=(H, W)))
    f = circular_conv_op(kernel, stride)
    # power iteration on AᵀA through jax.linear_transpose; tolerance 1e-6 relative (it converges
    # from below like (σ₂/σ₁)^{2n}; slowest case here: 1.2e-6 after 600 iterations, so 3000)
    pi = float(theory.operator_norm_power_iteration(f, (H, W, cin), key=jax.random.key(0), num_iters=3000))
    assert pi <= bound * (1 + 1e-12)
    assert pi == pytest.approx(bound, rel=1e-6)


def test_circular_matches_flax_circular_padding():
    kernel = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 2, 3)))
    m = nn.Conv(3, (3, 3), strides=2, padding="CIRCULAR", use_bias=False)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((8, 8, 2)))
    y_flax = m.apply({"params": {"kernel": kernel}}, x[None])[0]
    np.testing.assert_allclose(y_flax, circular_conv_op(kernel, 2)(x), rtol=1e-12, atol=1e-12)


def test_kernel_larger_than_the_grid_wraps_around():
    kernel = np.random.default_rng(3).standard_normal((5, 5, 2, 2))
    bound = float(theory.conv_lipschitz(kernel, input_shape=(4, 4)))
    # tolerance: rounding
    assert bound == pytest.approx(matrix_norm(conv_matrix(kernel, 1, 4, 4)), rel=1e-12)


@pytest.mark.parametrize("H,stride,padding", [(8, 1, "SAME"), (8, 2, "SAME"), (7, 2, "SAME"),
                                              (8, 1, "VALID"), (9, 2, "VALID")])
def test_zero_padding_gets_a_valid_upper_bound(H, stride, padding):
    kernel = np.random.default_rng(H + stride).standard_normal((3, 3, 2, 3))
    bound = float(theory.conv_lipschitz(kernel, stride=stride, input_shape=(H, H), padding=padding))
    exact = matrix_norm(conv_matrix(kernel, stride, H, H, padding))
    assert exact <= bound * (1 + 1e-12)
    assert bound < 1.25 * exact                    # and not a vacuous one (observed 2–7% above)


def test_circular_norm_on_the_same_grid_does_not_bound_zero_padding():
    # why zero padding needs the enlarged grid: [1, 0, −1] folds to 0 on a circular grid of 2,
    # while the zero-padded operator (y₀ = −x₁, y₁ = x₀) has norm 1
    kernel = jnp.array([[1.0], [0.0], [-1.0]]).reshape(3, 1, 1, 1)
    assert float(theory.conv_lipschitz(kernel, input_shape=(2, 1))) == pytest.approx(0.0, abs=1e-15)
    exact = matrix_norm(conv_matrix(kernel, 1, 2, 1, "SAME"))
    assert exact == pytest.approx(1.0, rel=1e-12)
    assert float(theory.conv_lipschitz(kernel, input_shape=(2, 1), padding="SAME")) >= exact


def test_same_padding_is_xla_same():
    """`same_padding` equals JAX's own "SAME" rule (``lax.padtype_to_pads``) exactly, for every
    size, kernel and stride up to 12, and refuses non-positive or non-integer arguments."""
    from jax import lax

    for n in range(1, 13):
        for k in range(1, 13):
            for s in range(1, 13):
                assert theory.same_padding(n, k, s) == tuple(lax.padtype_to_pads((n,), (k,), (s,), "SAME")[0])
    for bad in ((0, 3, 1), (5, 0, 1), (5, 3, 0), (5, 3.0, 1), (5, True, 1)):
        with pytest.raises(ValueError, match="positive int"):
            theory.same_padding(*bad)


def test_conv_lipschitz_validates():
    k = jnp.ones((3, 3, 1, 1))
    with pytest.raises(ValueError):
        theory.conv_lipschitz(k, stride=2, input_shape=(7, 7))         # circular needs H % s == 0
    with pytest.raises(ValueError):
        theory.conv_lipschitz(k, input_shape=(8, 8), padding="REFLECT")
    with pytest.raises(ValueError):
        theory.conv_lipschitz(jnp.ones((3, 3)), input_shape=(8, 8))
    with pytest.raises(ValueError):
        theory.conv_lipschitz(k, input_shape=(8, 8, 2))                  # channel mismatch


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), padding="CIRCULAR")(x)
        x = nn.relu(x)
        x = nn.Conv(4, (3, 3), strides=2, padding="CIRCULAR")(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(3)(x)


def test_model_product_bound_bounds_the_network():
    model = SmallCNN()
    variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((2, 8, 8, 2)))   # jit: one compile
    # non-trivial BatchNorm statistics
    variables = {"params": variables["params"],
                 "batch_stats": {"BatchNorm_0": {"mean": jnp.full(4, 0.3), "var": jnp.array([0.5, 2.0, 1.0, 0.1])}}}
    specs = {"Conv_0": theory.ConvSpec((8, 8), 1), "Conv_1": theory.ConvSpec((8, 8), 2)}
    res = theory.model_lipschitz_bound(variables, specs)
    p = variables["params"]
    assert set(res.per_layer) == {"Conv_0", "Conv_1", "BatchNorm_0", "Dense_0"}
    assert res.skipped == ()
    bn = float(jnp.max(jnp.abs(p["BatchNorm_0"]["scale"]) / jnp.sqrt(variables["batch_stats"]["BatchNorm_0"]["var"] + 1e-5)))
    assert float(res.per_layer["BatchNorm_0"]) == pytest.approx(bn, rel=1e-14)
    assert float(res.per_layer["Dense_0"]) == pytest.approx(float(theory.dense_lipschitz(p["Dense_0"]["kernel"])))
    prod = np.prod([float(v) for v in res.per_layer.values()])
    assert float(res.bound) == pytest.approx(prod, rel=1e-14)
    # the bound dominates the network's local Lipschitz constant (Jacobian norm) at random points
    jac = jax.jit(jax.jacfwd(lambda xi: model.apply(variables, xi[None])[0]))
    for i in range(3):
        xi = jax.random.normal(jax.random.key(10 + i), (8, 8, 2))
        J = np.asarray(jac(xi)).reshape(3, -1)
        assert np.linalg.norm(J, 2) <= float(res.bound)
    with pytest.raises(ValueError, match="ConvSpec"):
        theory.model_lipschitz_bound(variables, {"Conv_0": specs["Conv_0"]})


def test_model_bound_reports_what_it_skips():
    from spheres.sphere.models import QuadraticNet
    v = QuadraticNet(hidden=4).init(jax.random.key(0), jnp.ones((1, 3)))
    res = theory.model_lipschitz_bound(v)
    assert set(res.skipped) == {"W", "w", "b"} and res.per_layer == {}


def _smallest_no_wrap_grid(n, k, s, padding):
    """By search over the definition: the smallest multiple g >= n of s such that, with the input
    embedded at 0..n−1 of a circular grid of g, every index an output reads (s·i + u − lo) lands on
    itself when it is inside the input and on a zero (n..g−1) when it is not."""
    out, lo = outputs_and_anchor(n, k, s, padding)
    reads = [s * i + u - lo for i in range(out) for u in range(k)]
    g = s * -(-n // s)
    while not all((j % g == j) if 0 <= j < n else (n <= j % g) for j in reads):
        g += s
    return g, lo


def test_zero_padding_grid_is_the_smallest_without_wrap_around():
    from theory.lipschitz import _grid_and_anchor

    for padding in ("SAME", "VALID"):
        for n in range(1, 13):
            for k in range(1, 7):
                for s in (1, 2, 3):
                    if padding == "VALID" and k > n:
                        continue
                    assert _grid_and_anchor(n, k, s, padding) == _smallest_no_wrap_grid(n, k, s, padding), \
                        (n, k, s, padding)


def test_valid_convolution_with_one_output_position():
    kernel = np.random.default_rng(5).standard_normal((3, 3, 2, 2))
    bound = float(theory.conv_lipschitz(kernel, input_shape=(3, 3), padding="VALID"))
    # kernel = input: no read leaves the input, so the grid is the input itself and the bound is the
    # circular layer's norm on it (a shift of the anchor is an isometry); the one-position VALID
    # layer is that layer's first output row block, so it lies below (tolerance: rounding)
    assert bound == pytest.approx(matrix_norm(conv_matrix(kernel, 1, 3, 3, "CIRCULAR")), rel=1e-12)
    assert matrix_norm(conv_matrix(kernel, 1, 3, 3, "VALID")) <= bound * (1 + 1e-12)


def test_kernel_of_another_rank_is_skipped_by_name():
    params = {"params": {"conv1d": {"kernel": jnp.ones((3, 2, 2)), "bias": jnp.zeros(2)},
                         "dense": {"kernel": 2.0 * jnp.eye(2)}}}
    res = theory.model_lipschitz_bound(params)
    assert "conv1d/kernel" in res.skipped and res.per_layer == {"dense": pytest.approx(2.0)}


def test_power_iteration_with_zero_iterations_is_the_start():
    """num_iters = 0 is allowed: ‖A v₀‖ for the normalised random start (here A = 2·I: exactly 2)."""
    got = float(theory.operator_norm_power_iteration(lambda x: 2.0 * x, (5,), key=jax.random.key(1),
                                                     num_iters=0))
    assert got == pytest.approx(2.0, rel=1e-12)
