"""Training and evaluation sharded over 4 simulated CPU devices equal the single-device run."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, jax, numpy as np
    from spheres import train, evaluate
    from spheres.models import SphereMLP
    model = SphereMLP((16, 16))
    state = train.create_train_state(model, train.make_optimizer("adam", 1e-3), 8, key=jax.random.key(0))
    state = train.train(state, train.OnlineData(jax.random.key(1), 16, 8, 1.3), num_steps=60,
                        chunk=20, progress=False)
    r = evaluate.sphere_error_rate(lambda v, x: model.apply(v, x), train.variables_of(state),
                                   key=jax.random.key(2), d=8, radius=1.0, label=0, n=10_000,
                                   chunk=1000, progress=False)
    # the model's function (eval mode) on fixed points; raw parameters are not compared because
    # the Dense biases before BatchNorm get zero gradient up to float noise, which Adam amplifies
    # into lr-sized, reduction-order-dependent moves that BatchNorm cancels
    x = jax.random.normal(jax.random.key(9), (256, 8))
    logits = model.apply(train.variables_of(state), x)
    print(json.dumps({"devices": jax.device_count(), "logits": np.asarray(logits).tolist(),
                      "errors": r.errors}))
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


def test_batch_not_divisible_by_devices_is_a_clear_error():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    code = ("import jax; from spheres import train; from spheres.models import QuadraticNet;"
            "train.make_train_chunk(train.OnlineData(jax.random.key(0), 10, 4, 1.3), 5)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "batch size 10 is not divisible by the 4 visible devices" in out.stderr
