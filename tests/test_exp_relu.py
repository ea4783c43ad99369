"""Quick preset of sphere-relu with the manifold attacks (Gilmer §3)."""

import math

import pytest

from spheres.experiments import make_config, run_experiment


@pytest.fixture(scope="module")
def relu(tmp_path_factory):
    return run_experiment("sphere-relu", make_config("sphere-relu", "quick"), tmp_path_factory.mktemp("relu"))


def test_relu_quick_attacks_are_consistent(relu):
    a = relu["attacks"]
    assert a["n_points"] == 100
    # random inner pairs at d = 20: E‖x − x'‖ = sqrt(2) * (1 - O(1/d)); 10^4 pairs: within 2%
    assert abs(a["random_pair_distance"]["mean"] - math.sqrt(2)) < 0.02 * math.sqrt(2)
    # an off-manifold error is never farther than an on-manifold one from the same point (the
    # sphere is a subset of R^d), so the minima compare the same way
    on, off = a["on_manifold_nearest"], a["off_manifold_nearest"]
    assert off["found"] >= 1
    if on["found"]:
        assert off["distance"]["min"] <= on["distance"]["min"] + 1e-4
    # found off-manifold errors lie within the search radius 1
    assert off["distance"]["max"] <= 1.0 + 1e-5


def test_relu_quick_learns(relu):
    # 3000 steps at d = 20: error below 1% per sphere (observed ~1e-5)
    assert relu["error_rate"]["inner"]["rate"] < 0.01 and relu["error_rate"]["outer"]["rate"] < 0.01
