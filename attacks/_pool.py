"""A work pool for attacks whose examples need very different numbers of iterations.

A vmapped ``while_loop`` runs until the batch's SLOWEST example is done, so on a batch whose
per-example iteration counts vary (L-BFGS with a c search: mean 106, max 196 on FC100-100-10)
a third of the work is masked-out waiting.  The pool instead keeps ``slots`` examples in flight:
every iteration advances all slots by one vmapped step, and a slot whose example is done writes
its outcome and takes the next waiting example.  The loop then runs ≈ Σ steps / slots iterations
plus one slowest-example tail, instead of Σ over chunks of the chunk's maximum; the tail (no
example waiting, at most a quarter of the slots busy) runs with the busy slots packed into a
quarter of the slots.

An attack plugs in as a `PooledAttack` of pure per-example functions (vmapped here):

* ``prepare(model, config, ex) -> dict``: expensive per-example set-up (e.g. the gradient at x),
  run ONCE over the whole batch and merged into the example, so a refill is only a gather;
* ``start(config, ex, carry) -> state``: the initial state of ``ex``; ``carry`` is the state the
  slot held before (or ``None`` at the first fill), so large buffers can be reused in place;
* ``step(model, config, ex, state) -> state`` and ``done(config, state) -> bool``;
* ``output(state) -> pytree``: what is kept when the example is done;
* ``finish(model, config, ex, out) -> AttackResult``: run once over the whole batch at the end.

Each example's arithmetic is the same whatever slot or batch it runs in (up to floating-point
rounding of batched kernels), and ``max_steps`` bounds every example's iterations.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from attacks._base import AttackResult, bind


# Pools of fewer slots run one phase, without the packed tail. A pool refilled every iteration keeps
# its slots busy until its last few examples, and an iteration costs about linearly in slots, so a
# small pool wastes little in its tail; the packed tail (a second loop, at a quarter of the slots)
# pays off only for wide pools, and it compiles the loop body twice. L-BFGS on FC10 and
# FC100-100-10 (CPU, batches 32-256): one phase with 8-16 slots runs as fast as or faster than two
# phases with 64, and compiles one loop body instead of two (half the compile time).
TAIL_MIN_SLOTS = 64


class PooledAttack(NamedTuple):
    prepare: Callable
    start: Callable
    step: Callable
    done: Callable
    output: Callable
    finish: Callable


def _select(mask, new, old):
    """Per-slot select over a pytree whose leaves have a leading slot axis."""
    def one(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)
    return jax.tree.map(one, new, old)


@functools.partial(jax.jit, static_argnames=("attack", "logit_fn", "config", "slots", "max_steps",
                                             "tail_min_slots"))
def run_pool(attack: PooledAttack, logit_fn: Callable, config: Any, params: Any, batch: dict, *,
             slots: int, max_steps: int, tail_min_slots: int = TAIL_MIN_SLOTS) -> AttackResult:
    """Run ``attack`` over ``batch`` (leaves with leading axis B) with ``slots`` examples in flight.

    A pool of ``P = min(slots, B) >= tail_min_slots`` slots finishes its tail in ``P // 4`` packed
    slots (see the module docstring); a smaller one runs a single phase.
    Returns the `AttackResult` of every example, in batch order.
    """
    model = bind(logit_fn, params)
    B = jax.tree.leaves(batch)[0].shape[0]
    P = min(int(slots), B)
    batch = {**batch, **jax.vmap(lambda ex: attack.prepare(model, config, ex))(batch)}
    gather = lambda idx: jax.tree.map(lambda a: a[jnp.minimum(idx, B - 1)], batch)  # noqa: E731

    idx = jnp.arange(P, dtype=jnp.int32)
    ex = gather(idx)
    state = jax.vmap(lambda e: attack.start(config, e, None))(ex)
    out_one = jax.eval_shape(attack.output, jax.tree.map(lambda a: a[0], state))
    outputs = jax.tree.map(lambda s: jnp.zeros((B,) + s.shape, s.dtype), out_one)

    def body(carry):
        idx, ex, state, count, pending, outputs = carry
        state = jax.vmap(lambda e, s: attack.step(model, config, e, s))(ex, state)
        count = count + 1
        ended = (jax.vmap(lambda s: attack.done(config, s))(state) | (count >= max_steps)) & (idx < B)
        # Refill every iteration, masked: only gathers, selects and a P-row scatter, cheaper than
        # a lax.cond, whose branches copy the carry's large buffers in and out.
        keep = jax.vmap(attack.output)(state)
        where = jnp.where(ended, idx, B)                         # B: out of range, dropped
        outputs = jax.tree.map(lambda o, k: o.at[where].set(k, mode="drop"), outputs, keep)
        idx = jnp.where(ended, pending + jnp.cumsum(ended) - 1, idx).astype(jnp.int32)
        ex = gather(idx)                         # unchanged rows for slots that did not end
        state = _select(ended, jax.vmap(lambda e, s: attack.start(config, e, s))(ex, state), state)
        return (idx, ex, state, jnp.where(ended, 0, count),
                pending + jnp.sum(ended, dtype=jnp.int32), outputs)

    carry = (idx, ex, state, jnp.zeros((P,), jnp.int32), jnp.asarray(P, jnp.int32), outputs)
    # Phase 1 with P slots while examples wait or more than P/4 slots are busy; phase 2 finishes
    # the tail with the busy slots packed into P/4 (an iteration costs ~linearly in slots, and in
    # the tail most of the P slots would idle).
    small = max(1, P // 4)
    busy = lambda c: jnp.sum(c[0] < B)  # noqa: E731
    if P < max(2, tail_min_slots):
        carry = lax.while_loop(lambda c: busy(c) > 0, body, carry)
    else:
        carry = lax.while_loop(lambda c: (c[4] < B) | (busy(c) > small), body, carry)
        take = jnp.argsort(carry[0] >= B, stable=True)[:small]   # busy slots first
        idx, ex, state, count = jax.tree.map(lambda a: a[take], carry[:4])
        carry = (idx, ex, state, count, carry[4], carry[5])
        carry = lax.while_loop(lambda c: busy(c) > 0, body, carry)
    outputs = carry[5]
    return jax.vmap(lambda ex, o: attack.finish(model, config, ex, o))(batch, outputs)
