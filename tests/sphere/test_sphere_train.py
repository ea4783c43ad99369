"""Training: learns the task, compiles once, stops on NaN naming the step, resumes exactly."""

import json

import jax
import numpy as np
import pytest

from spheres.sphere import data as sdata, evaluate, train
from spheres.checkpoint import Checkpoints
from spheres.experiments import make_config, run_experiment
from spheres.sphere.models import QuadraticNet, SphereMLP


def test_small_relu_net_learns_d10():
    """d = 10, 2 x 64 ReLU+BN, Adam 1e-3, 2000 steps of batch 50: error below 1% on each sphere
    (measured ~0.1%; 1% leaves margin for other seeds and platforms)."""
    model = SphereMLP((64, 64))
    state = train.create_train_state(model, train.make_optimizer("adam", 1e-3), 10, key=jax.random.key(0))
    state = train.train(state, train.OnlineData(jax.random.key(1), 50, 10, 1.3), num_steps=2000,
                        chunk=500, progress=False)
    rates = evaluate.two_sphere_error_rates(lambda v, x: model.apply(v, x), train.variables_of(state),
                                            key=jax.random.key(2), d=10, R=1.3, n=20_000,
                                            progress=False)
    assert rates["inner"].rate < 0.01 and rates["outer"].rate < 0.01


def test_train_chunk_does_not_recompile():
    model = QuadraticNet(hidden=8)
    state = train.create_train_state(model, train.make_optimizer(), 4, key=jax.random.key(0))
    run = train.make_train_chunk(train.OnlineData(jax.random.key(1), 10, 4, 1.3), 5)
    state, _ = run(state)
    state, _ = run(state)
    state, _ = run(state)
    assert run.jitted._cache_size() == 1
    assert int(state.step) == 15


@pytest.mark.parametrize("chunk", [6, 7])
def test_unrolled_scan_takes_the_same_steps_as_a_python_loop(chunk):
    """Two steps per loop iteration (the default ``SCAN_UNROLL``), including an odd chunk where the
    scan runs a remainder step: the same batches in the same order as ``train_step`` called from
    Python. Tolerance: only rounding differs between the fused programs (observed 3e-8 in the
    parameters, 3e-8 relative in the losses); 1e-5 leaves margin for other CPUs."""
    assert train.SCAN_UNROLL == 2
    model = SphereMLP((16, 16))
    data = train.OnlineData(jax.random.key(1), 10, 4, 1.3)
    state = train.create_train_state(model, train.make_optimizer("adam", 1e-3), 4, key=jax.random.key(0))
    run = train.make_train_chunk(data, chunk)
    got, metrics = run(state)
    s, losses = state, []
    step = jax.jit(train.train_step)
    for t in range(chunk):
        s, m = step(s, *sdata.online_batch(data.key, t, 10, 4, 1.3))
        losses.append(float(m["loss"]))
    assert int(got.step) == chunk
    np.testing.assert_allclose(float(metrics.loss), np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(float(metrics.last_loss), losses[-1], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(got.params), jax.tree_util.tree_leaves(s.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    with pytest.raises(ValueError, match="unroll"):
        train.make_train_chunk(data, chunk, unroll=0)


def test_nan_stops_with_the_first_bad_step():
    """SGD with a huge learning rate on the quadratic net diverges; the error names the first step
    whose loss is non-finite, which we find independently with a Python loop of train_step."""
    model = QuadraticNet(hidden=8)
    tx = train.make_optimizer("sgd", 1e6)
    data = train.OnlineData(jax.random.key(1), 10, 4, 1.3)
    state = train.create_train_state(model, tx, 4, key=jax.random.key(0))
    s, first_bad = state, None
    for t in range(40):
        s, m = train.train_step(s, *sdata.online_batch(data.key, t, 10, 4, 1.3))
        if not np.isfinite(float(m["loss"])):
            first_bad = t
            break
    assert first_bad is not None and first_bad > 0
    with pytest.raises(train.NonFiniteError, match=f"step {first_bad};") as e:
        train.train(state, data, num_steps=40, chunk=20, progress=False)
    assert e.value.step == first_bad


def _params_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("name,overrides", [
    ("sphere-relu", ["d=6", "widths=16,16", "steps=400", "chunk_steps=50", "ckpt_every=100",
                     "eval_samples=2000", "attack_samples=0"]),
    ("sphere-quadratic", ["d=6", "hidden=12", "steps=400", "chunk_steps=50", "ckpt_every=100",
                          "eval_samples=2000", "train_size=230", "attack_samples=0", "track_every=50",
                          "track_eval_every=100", "track_eval_samples=500"]),
])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, name, overrides):
    cfg = make_config(name, "quick", overrides)
    full = run_experiment(name, config=cfg, out_dir=tmp_path / "full")

    # interrupt the second run right after the checkpoint at step 200 (mid-epoch for N=230)
    orig_save = Checkpoints.save

    def save_then_die(self, step, state):
        orig_save(self, step, state)
        if step == 200:
            self.wait()
            raise _Interrupt

    monkeypatch.setattr(Checkpoints, "save", save_then_die)
    with pytest.raises(_Interrupt):
        run_experiment(name, config=cfg, out_dir=tmp_path / "resumed")
    monkeypatch.setattr(Checkpoints, "save", orig_save)
    resumed = run_experiment(name, config=cfg, out_dir=tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 200

    strip = lambda ms: [{k: v for k, v in m.items()} for m in ms]
    m_full = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    m_res = [json.loads(l) for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert strip(m_full) == strip(m_res)
    assert full["error_rate"] == resumed["error_rate"]
    with Checkpoints(tmp_path / "full" / "ckpt") as a, Checkpoints(tmp_path / "resumed" / "ckpt") as b:
        assert a.latest_step() == b.latest_step() == 400
        template = train.create_train_state(*_model_tx(cfg), cfg.d, key=jax.random.key(0))
        assert _params_equal(a.restore_or(template).params, b.restore_or(template).params)


def _model_tx(cfg):
    from spheres.experiments._sphere import make_model

    return make_model(cfg), train.make_optimizer(cfg.optimizer, cfg.lr)
