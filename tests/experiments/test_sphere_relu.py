"""Quick preset of sphere-relu with the manifold attacks (Gilmer §3)."""

import math

import pytest

from spheres.experiments import make_config, run_experiment


@pytest.fixture(scope="module")
def relu(tmp_path_factory):
    return run_experiment("sphere-relu", tmp_path_factory.mktemp("relu"))


def test_relu_quick_attacks_are_consistent(relu):
    a = relu["attacks"]
    assert a["n_points"] == 100
    # random inner pairs at d = 20: E‖x − x'‖ = sqrt(2) * (1 - O(1/d)); 10^4 pairs: within 2%
    assert abs(a["random_pair_distance"]["mean"] - math.sqrt(2)) < 0.02 * math.sqrt(2)
    # an off-manifold error is never farther than an on-manifold one from the same point (the
    # sphere is a subset of R^d), so the minima compare the same way
    on, off = a["on_manifold_nearest"], a["off_manifold_nearest"]
    assert off["found"] >= 1 and on["found"] >= 1     # the quick net has both (observed 100 and 29)
    assert off["distance"]["min"] <= on["distance"]["min"] + 1e-4
    # found off-manifold errors lie within the search radius 1
    assert off["distance"]["max"] <= 1.0 + 1e-5
    # CROWN's certified radius is a lower bound: below every distance the attacks found
    for side in (on, off):
        assert side["bracket"]["kind"] == "certified" and side["bracket"]["violations"] == 0
        assert side["bracket"]["lower_mean"] > 0
    # the on-manifold certificate is at least the off-manifold one (the cap is inside the ball)
    assert on["bracket"]["lower_mean"] >= off["bracket"]["lower_mean"] - 1e-6


def test_relu_quick_learns(relu):
    # 3000 steps at d = 20: error below 1% per sphere (observed ~1e-5)
    assert relu["error_rate"]["inner"]["rate"] < 0.01 and relu["error_rate"]["outer"]["rate"] < 0.01


def test_manifold_analysis_leaves_out_points_that_are_already_errors():
    """A linear "sphere model" ``logit = 10·(x₁ − 0.5)`` misclassifies every inner-sphere point with
    x₁ > 0.5.  Those starts are counted, not measured; from every other point the nearest
    off-manifold error is exactly the distance 0.5 − x₁ to the hyperplane (the attack is exact
    on linear models), so the minimum is positive and the statistics are those of the rest."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from spheres.sphere import data as sdata
    from spheres.sphere.manifold import manifold_analysis

    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            return 10.0 * (x[..., 0] - 0.5)

    d, n, key = 5, 64, jax.random.key(3)
    model, variables = Linear(), {}
    out, arrays = manifold_analysis(model, variables, d=d, R=1.3, key=key, n=n, step_size=0.05,
                                    num_steps=50, worst_case_steps=50, batch=32)
    x = np.asarray(sdata.sample_sphere(jax.random.split(key)[0], n, d, 1.0))   # the same sample
    bad = x[:, 0] > 0.5
    assert 0 < out["start_errors"] == bad.sum() < n and out["n_correct"] == n - bad.sum()
    np.testing.assert_array_equal(arrays["start_error"], bad)
    off = out["off_manifold_nearest"]
    reach = ~bad & (0.5 - x[:, 0] <= 1.0)            # within the search radius 1
    assert off["found"] == reach.sum() and off["distance"]["min"] > 0
    assert off["bracket"]["kind"] == "none"          # no bound of ours for an arbitrary model
    # float32 model and attack: the hyperplane distance to 1e-4
    np.testing.assert_allclose(arrays["off_manifold_distance"][reach], 0.5 - x[reach, 0], atol=1e-4)
    np.testing.assert_allclose(off["distance"]["min"], np.min(0.5 - x[reach, 0]), atol=1e-4)
    assert out["on_manifold_nearest"]["distance"]["min"] > 0
    assert out["worst_case"]["success"] <= n - bad.sum()
    del jnp


def test_on_off_manifold_factor_row(relu):
    """The paper's ≈ 2× (on- vs off-manifold distance) gets a row: the ratio of the attacks' means,
    and of the brackets' certified lower ends."""
    from spheres.experiments import _gilmer

    row = next(r for r in _gilmer.attack_rows(relu) if r.value is _gilmer.FACTOR)
    on, off = relu["attacks"]["on_manifold_nearest"], relu["attacks"]["off_manifold_nearest"]
    assert on["found"] and off["found"]           # the quick net has errors both ways (29 and 100 of 100)
    ratio = on["distance"]["mean"] / off["distance"]["mean"]
    assert row.ours.startswith(f"{ratio:.2f}× by the attacks") and "certified lower ends" in row.ours
