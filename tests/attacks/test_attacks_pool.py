"""The work pool (`attacks._pool.run_pool`) on a toy attack whose examples need different numbers
of steps: every example's outcome lands at its own batch position, whatever the number of slots,
and ``max_steps`` caps each example, not the batch.  Exact integer arithmetic: no tolerance."""

from __future__ import annotations

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from attacks._base import AttackResult
from attacks._pool import TAIL_MIN_SLOTS, PooledAttack, run_pool


def _prepare(model, config, ex):
    return {"need": jnp.abs(ex["x"][0]).astype(jnp.int32)}   # steps this example needs


def _start(config, ex, previous):
    return {"count": jnp.zeros((), jnp.int32), "acc": jnp.zeros_like(ex["x"]), "need": ex["need"]}


def _step(model, config, ex, s):
    return {**s, "count": s["count"] + 1, "acc": s["acc"] + model(ex["x"])}


def _finish(model, config, ex, out):
    count, acc = out
    return AttackResult(x_adv=acc, success=count >= ex["need"], distance=acc[0],
                        loss=count.astype(acc.dtype), num_steps=count)


TOY = PooledAttack(prepare=_prepare, start=_start, step=_step,
                   done=lambda config, s: s["count"] >= s["need"],
                   output=lambda s: (s["count"], s["acc"]), finish=_finish)


def double(x):
    return 2.0 * x


@pytest.mark.parametrize("tail_min_slots", [2, TAIL_MIN_SLOTS])   # packed tail from 2 slots / the default
@pytest.mark.parametrize("slots", [1, 3, 7, 100])
def test_pool_outcomes_in_batch_order(slots, tail_min_slots):
    need = np.array([5, 1, 9, 2, 2, 7, 1], np.float32)          # uneven, refills in mid-run
    x = np.stack([need, np.arange(7, dtype=np.float32)], axis=1)
    res = run_pool(TOY, double, None, None, {"x": jnp.asarray(x)}, slots=slots, max_steps=50,
                   tail_min_slots=tail_min_slots)
    np.testing.assert_array_equal(res.num_steps, need.astype(np.int32))
    np.testing.assert_array_equal(res.x_adv, 2.0 * x * need[:, None])   # Σ over its own steps
    assert res.success.all()


def test_pool_max_steps_caps_each_example():
    need = np.array([30, 1, 4, 30], np.float32)
    x = np.stack([need, need], axis=1)
    res = run_pool(TOY, double, None, None, {"x": jnp.asarray(x)}, slots=2, max_steps=4)
    np.testing.assert_array_equal(res.num_steps, [4, 1, 4, 4])
    np.testing.assert_array_equal(res.success, [False, True, True, False])


@pytest.mark.parametrize("slots", [TAIL_MIN_SLOTS - 1, TAIL_MIN_SLOTS, 40])
def test_pool_with_and_without_the_packed_tail(slots):
    """Around the one-phase threshold and with the whole batch in flight: the same outcomes."""
    rng = np.random.default_rng(0)
    need = rng.integers(1, 30, size=40).astype(np.float32)
    need[[3, 17]] = 60                                           # two slow examples: a long tail
    x = np.stack([need, np.arange(40, dtype=np.float32)], axis=1)
    res = run_pool(TOY, double, None, None, {"x": jnp.asarray(x)}, slots=slots, max_steps=100)
    np.testing.assert_array_equal(res.num_steps, need.astype(np.int32))
    np.testing.assert_array_equal(res.x_adv, 2.0 * x * need[:, None])


def _while_carry_sizes(jaxpr):
    """The slot count (length of the carried ``idx``) of every while loop, in program order."""
    sizes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "while":
            start = eqn.params["cond_nconsts"] + eqn.params["body_nconsts"]
            sizes.append(eqn.invars[start].aval.shape[0])
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            sizes += _while_carry_sizes(sub)
    return sizes


@pytest.mark.parametrize("slots, tail_min_slots, phases", [
    (1, 1, [1]),            # fewer than 2 slots: one phase whatever the threshold
    (3, 4, [3]),            # below the threshold: one phase
    (3, 2, [3, 1]),         # at or above it: P slots, then the tail in max(1, P // 4)
    (8, 2, [8, 2]),
    (40, 8, [40, 10]),
])
def test_pool_phases_and_packed_tail_width(slots, tail_min_slots, phases):
    """The module's promise about its loops, read off the compiled program: one loop below
    ``max(2, tail_min_slots)`` slots, else a second loop over ``max(1, P // 4)`` packed slots."""
    x = jnp.ones((40, 2))
    jaxpr = jax.make_jaxpr(lambda b: run_pool(TOY, double, None, None, b, slots=slots, max_steps=5,
                                              tail_min_slots=tail_min_slots))({"x": x})
    assert _while_carry_sizes(jaxpr.jaxpr) == phases
