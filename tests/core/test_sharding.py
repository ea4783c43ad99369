"""Training and evaluation sharded over 4 simulated CPU devices equal the single-device run."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import json, jax, numpy as np
    from spheres.sphere import train, evaluate
    from spheres.sphere.models import SphereMLP, batch_logits
    from spheres.sharding import batch_sharding, data_mesh
    model = SphereMLP((16, 16))
    state = train.create_train_state(model, train.make_optimizer("adam", 1e-3), 8, key=jax.random.key(0))
    state = train.train(state, train.OnlineData(jax.random.key(1), 16, 8, 1.3), num_steps=60,
                        chunk=20, progress=False)
    # row blocks of <= 100 per device (models.map_row_blocks): on 4 devices 3 blocks of 4 x 84 rows
    # (8 padding rows), on 1 device 10 blocks of 100
    blocked = lambda v, x: batch_logits(model, v, x, block=100)  # noqa: E731
    r = evaluate.sphere_error_rate(blocked, train.variables_of(state),
                                   key=jax.random.key(2), d=8, radius=1.0, label=0, n=10_000,
                                   chunk=1000, progress=False)
    # the model's function (eval mode) on fixed points; raw parameters are not compared because
    # the Dense biases before BatchNorm get zero gradient up to float noise, which Adam amplifies
    # into lr-sized, reduction-order-dependent moves that BatchNorm cancels
    x = jax.random.normal(jax.random.key(9), (256, 8))
    logits = model.apply(train.variables_of(state), x)
    xs = jax.device_put(x, batch_sharding(data_mesh()))
    gap = jax.jit(lambda v, x: batch_logits(model, v, x, block=16))(train.variables_of(state), xs) - logits
    print(json.dumps({"devices": jax.device_count(), "logits": np.asarray(logits).tolist(),
                      "errors": r.errors, "blocked_gap": float(np.abs(np.asarray(gap)).max())}))
""")


def _run(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_training_and_eval_match_single_device():
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    # 60 Adam steps in float32 with a different reduction order across devices: the trained
    # function agrees to 1e-3 relative (float32 noise amplified by Adam's normalisation over 60 steps);
    # the error count on the same 10k points may differ only for points within noise of the boundary
    np.testing.assert_allclose(four["logits"], one["logits"], rtol=1e-3, atol=1e-4)
    assert abs(four["errors"] - one["errors"]) <= 2
    # blocked evaluation of a batch-sharded x (4 x 16-row blocks per call) = one call, to float32
    # rounding of GEMMs of another height
    assert one["blocked_gap"] <= 1e-5 and four["blocked_gap"] <= 1e-5


def test_batch_not_divisible_by_devices_is_a_clear_error():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    code = ("import jax; from spheres.sphere import train; from spheres.sphere.models import QuadraticNet;"
            "train.make_train_chunk(train.OnlineData(jax.random.key(0), 10, 4, 1.3), 5)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "batch size 10 is not divisible by the 4 visible devices" in out.stderr


ATTACK_SCRIPT = textwrap.dedent("""
    import json, jax, jax.numpy as jnp, numpy as np
    import attacks
    from spheres.sphere import data as sdata
    from spheres.sharding import batch_sharding, data_mesh
    W = jax.random.normal(jax.random.key(0), (12, 6)) / 12 ** 0.5   # alphas spread around 1
    f = lambda p, x: jnp.sum((p @ x) ** 2) - 1.0        # a quadratic net, positive = outer
    x = sdata.sample_sphere(jax.random.key(1), 8, 6, 1.0)
    x = jax.device_put(x, batch_sharding(data_mesh()))  # batch split over all devices
    y = jnp.zeros(8, jnp.int32)
    r = attacks.sphere_pgd(f, x, y, step_size=0.02, num_steps=200, mode="nearest", params=W)
    logit = jax.vmap(lambda x: f(W, x))(r.x_adv)
    print(json.dumps({"devices": jax.device_count(), "shards": len(r.x_adv.sharding.device_set),
                      "distance": np.asarray(r.distance).tolist(), "success": np.asarray(r.success).tolist(),
                      "logit": np.asarray(logit).tolist()}))
""")


def test_attack_on_a_sharded_batch_matches_single_device():
    """Attacks are vmapped and jitted, so a batch sharded over 4 devices is partitioned by XLA;
    the results equal the single-device ones to float32 round-off (1e-5). The nearest-error attack
    ends within its bisection resolution of the boundary, so a returned point whose logit is within
    1e-5 of 0 may be judged on either side by differently rounded programs: success is compared
    only away from the boundary."""
    def run(devices):
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        out = subprocess.run([sys.executable, "-c", ATTACK_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    one, four = run(1), run(4)
    assert four["devices"] == 4 and four["shards"] == 4
    clear = np.abs(np.asarray(one["logit"])) > 1e-5
    assert clear.sum() >= 3 and sum(one["success"]) >= 6
    assert np.array_equal(np.asarray(one["success"])[clear], np.asarray(four["success"])[clear])
    np.testing.assert_allclose(four["distance"], one["distance"], rtol=1e-5, atol=1e-6)
