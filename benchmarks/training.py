"""(2) Training steps/s at batch 50 (Gilmer's recipe: sigmoid cross-entropy, Adam 1e-4, online data).

Models: the ReLU net d-1000-1000-1 with BatchNorm (``SphereMLP``) and the quadratic net
(``QuadraticNet``, h = 1000). Every implementation draws a fresh two-sphere batch each step (the
sampling is part of the work on both sides) and does ``steps`` optimiser steps per call:

* ``jax-scan``: ``spheres.sphere.train.make_train_chunk`` (``steps`` steps in one jitted ``lax.scan``);
* ``jax-step-loop`` (ReLU net): ``jit(online_batch + train_step)`` called once per step from Python;
* ``torch-eager``: the same network, ``torch.optim.Adam``, ``BCEWithLogitsLoss``, same threads;
* ``torch-compile``: the same with ``torch.compile`` on the model (forward and backward) and on
  ``optimizer.step`` (skipped at ``--size tiny``: compiling takes a minute or more);
* ``relu-gemms-only``: the ReLU step's matmuls alone, same shapes (the ceiling at batch 50);
* the matmul FLOP-rate reference in the same rounds.

Equal work, checked before speed: same parameter count, batch, steps and optimiser settings; from the
same weights on the same batch both frameworks give the same loss and, after one Adam step, the same
logits on held-out points; and the training losses of the timed runs agree (each implementation's
own random batches, so within sampling noise).

FLOPs per step count the dense layers: forward 2BΣ, weight gradients 2BΣ, input gradients
2B(Σ − d·h₁) (none for the first layer), Σ = Σ in·out; the quadratic net 4Bdh.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from spheres.sphere import data as sdata
from spheres.sphere.models import QuadraticNet, SphereMLP, count_params
from spheres.sphere.train import (OnlineData, create_train_state, make_optimizer, make_train_chunk,
                           train_step, variables_of)

from . import _harness as H

NAME = "train"
TITLE = "(2) Training steps/s, batch 50, Adam"
GOAL = "jax-scan >= 3x torch-eager and >= 60% of the matmul FLOP rate"
SIZES = {
    "tiny": dict(d=20, widths=(32, 32), hidden=32, batch=50, steps=10, probe=256, repeats=2),
    "full": dict(d=500, widths=(1000, 1000), hidden=1000, batch=50, steps=100, probe=2048, repeats=5),
}
R = 1.3
LR = 1e-4


def _flops_per_step(kind: str, d: int, widths, hidden: int, B: int) -> float:
    if kind == "relu":
        s = H.dense_flops([d, *widths, 1])
        return 6.0 * B * s - 2.0 * B * d * widths[0]
    return 4.0 * B * d * hidden


def _torch_trainer(ctx, tmodel, B, d, steps, *, compiled: bool, seed: int):
    """A PyTorch training chunk: ``steps`` steps of sample -> forward -> BCE -> backward -> Adam."""
    torch = ctx.torch
    from . import _torch_models as TM

    opt = torch.optim.Adam(tmodel.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    lossf = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    model = torch.compile(tmodel) if compiled else tmodel
    opt_step = torch.compile(opt.step) if compiled else opt.step

    def chunk():
        total = torch.zeros(())
        for _ in range(steps):
            x, y = TM.sample_two_spheres(gen, B, d, R)
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), y)
            loss.backward()
            opt_step()
            total += loss.detach()
        return total / steps

    return chunk


def _one_step_check(ctx, eq: H.EqualWork, kind: str, model, state0, B, d):
    """Same weights, same batch: same loss; after one Adam step, same logits on other points."""
    torch = ctx.torch
    from . import _torch_models as TM

    x, y = sdata.sample_two_spheres(jax.random.key(11), B, d, R)
    xp, _ = sdata.sample_two_spheres(jax.random.key(12), 256, d, R)
    tm = TM.sphere_mlp(variables_of(state0)) if kind == "relu" else TM.QuadraticNet(variables_of(state0))
    tm.train()
    opt = torch.optim.Adam(tm.parameters(), lr=LR)
    loss_t = torch.nn.BCEWithLogitsLoss()(tm(torch.from_numpy(np.array(x))),
                                         torch.from_numpy(np.array(y, np.float32)))
    loss_t.backward()
    opt.step()
    tm.eval()
    with torch.no_grad():
        logits_t = tm(torch.from_numpy(np.array(xp))).numpy()
    s1, m = jax.jit(train_step)(state0, x, y)
    logits_j = np.asarray(model.apply(variables_of(s1), xp, train=False))
    eq.close(f"{kind}: loss of the same batch from the same weights (JAX vs PyTorch)",
             {"jax": float(m["loss"]), "torch": float(loss_t.detach())}, rtol=1e-4, atol=1e-6)
    # Adam's first step moves every parameter by ~lr·sign(g): parameters with |g| near float noise
    # may move either way, so the logits agree to a few lr·(fan-in) rather than to rounding.
    eq.arrays_close(f"{kind}: logits after one Adam step on held-out points (JAX vs PyTorch)",
                    logits_j, logits_t, rtol=2e-2, atol=1e-3, names=("jax", "torch"))


def _bench_model(ctx: H.Context, kind: str, cfg: dict, eq: H.EqualWork, skipped: list) -> tuple[list, dict]:
    eq.scope = kind
    d, B, steps = cfg["d"], cfg["batch"], cfg["steps"]
    widths, hidden = tuple(cfg["widths"]), cfg["hidden"]
    model = SphereMLP(widths) if kind == "relu" else QuadraticNet(hidden=hidden)
    tx = make_optimizer("adam", LR)
    state0 = create_train_state(model, tx, d, key=jax.random.key(0))
    flops = _flops_per_step(kind, d, widths, hidden, B) * steps
    desc = f"SphereMLP{widths}" if kind == "relu" else f"QuadraticNet(h={hidden})"
    work = {"model": desc, "d": d, "params": count_params(variables_of(state0)), "batch": B,
            "steps_per_call": steps, "optimizer": f"adam(lr={LR}, b1=0.9, b2=0.999, eps=1e-8)",
            "loss": "sigmoid cross-entropy", "data": "fresh two-sphere batch per step"}

    run_chunk = make_train_chunk(OnlineData(jax.random.key(1), B, d, R), steps)
    holder = {"scan": run_chunk.replicate(state0)}

    def jax_scan():
        s, m = run_chunk(holder["scan"])
        holder["scan"] = s
        return m.loss

    impls = [H.Impl(f"{kind}/jax-scan", "jax", jax_scan, steps, "steps", flops, work=work)]

    if kind == "relu" and not ctx.tiny:   # a diagnostic: not compiled at size tiny
        data_key = jax.random.key(2)

        @jax.jit
        def one_step(state, step):
            x, y = sdata.online_batch(data_key, step, B, d, R)
            return train_step(state, x, y)

        holder["loop"] = state0

        def jax_loop():
            s = holder["loop"]
            total = 0.0
            for _ in range(steps):
                s, m = one_step(s, s.step)
                total = total + m["loss"]
            holder["loop"] = s
            return total / steps

        impls.append(H.Impl(f"{kind}/jax-step-loop", "jax", jax_loop, steps, "steps", flops, work=work,
                            note="one jitted step per Python call"))

    if ctx.torch is not None:
        from . import _torch_models as TM

        def fresh():
            m = TM.sphere_mlp(variables_of(state0)) if kind == "relu" else TM.QuadraticNet(variables_of(state0))
            return m.train()

        tm = fresh()
        tparams = int(sum(p.numel() for p in tm.parameters()))
        twork = {**work, "params": tparams}
        impls.append(H.Impl(f"{kind}/torch-eager", "torch",
                            _torch_trainer(ctx, tm, B, d, steps, compiled=False, seed=3),
                            steps, "steps", flops, work=twork))
        if ctx.compile_torch and not ctx.tiny:
            try:
                trainer = _torch_trainer(ctx, fresh(), B, d, steps, compiled=True, seed=4)
                impls.append(H.Impl(f"{kind}/torch-compile", "torch", trainer, steps, "steps", flops,
                                    work=twork, note="torch.compile(model) + torch.compile(opt.step)",
                                    may_fail=True))
            except Exception as e:  # torch.compile may be unavailable on a machine
                skipped.append({"name": f"{kind}/torch-compile", "reason": f"{type(e).__name__}: {e}"})
        else:
            skipped.append({"name": f"{kind}/torch-compile",
                            "reason": "size tiny (compiling takes minutes)" if ctx.tiny else "--no-torch-compile"})
        _one_step_check(ctx, eq, kind, model, state0, B, d)
    else:
        skipped.append({"name": f"{kind}/torch-*", "reason": ctx.torch_reason})
    return impls, work


def _gemm_ceiling(d: int, widths, B: int, steps: int) -> H.Impl:
    """Only the matmuls of ``steps`` ReLU-net training steps (forward, weight and input gradients,
    the shapes of batch B) in one jitted ``lax.scan``: the rate the training step could reach if
    everything but its GEMMs were free. Small-batch GEMMs run well below the n×n probe's rate, so
    this is the fair ceiling for "% of FLOP rate" at batch 50."""
    sizes = [d, *widths, 1]
    keys = jax.random.split(jax.random.key(7), len(sizes))
    Ws = [jax.random.normal(k, (a, b), jnp.float32) / math.sqrt(a) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    x0 = jax.random.normal(keys[-1], (B, d), jnp.float32)

    @jax.jit
    def gemms(x):
        def one(x, _):
            acts = [x]
            for W in Ws:
                acts.append(acts[-1] @ W)
            g, total = acts[-1], 0.0
            for i in reversed(range(len(Ws))):
                total = total + jnp.sum(acts[i].T @ g)          # weight gradient
                if i > 0:
                    g = g @ Ws[i].T                              # input gradient
            return x + 1e-12 * total, None                       # a data dependence between steps

        return jax.lax.scan(one, x, None, length=steps)[0]

    return H.Impl("relu-gemms-only/jax", "jax", lambda: gemms(x0), steps, "steps",
                  _flops_per_step("relu", d, widths, 0, B) * steps,
                  work={"what": "the ReLU step's matmuls only", "batch": B},
                  note="ceiling: the training step's GEMMs alone")


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    eq = H.EqualWork()
    skipped: list = []
    impls, works = [], {}
    for kind in ("relu", "quadratic"):
        more, works[kind] = _bench_model(ctx, kind, cfg, eq, skipped)
        impls += more
    impls.append(_gemm_ceiling(cfg["d"], cfg["widths"], cfg["batch"], cfg["steps"]))
    impls += H.matmul_probe(ctx, cfg["probe"])

    records, outputs = H.measure(impls, cfg["repeats"], skipped)
    comps, fracs = [], []
    xla = f"xla-matmul-{cfg['probe']}"
    for kind in ("relu", "quadratic"):
        names = [k for k in records if k.startswith(kind + "/")]
        eq.scope = kind
        eq.same(f"{kind}: model, batch, steps, optimiser",
                {k: {f: records[k]["work"][f] for f in ("params", "batch", "steps_per_call", "optimizer")}
                 for k in names})
        # every implementation ran 1 + repeats calls from the same initial weights; their mean
        # training loss over the last call agrees up to the noise of their different random batches
        losses = {k: float(np.asarray(outputs[k])) for k in names}
        eq.close(f"{kind}: mean training loss of the last timed call", losses,
                 rtol=0.0, atol=0.05 if not ctx.tiny else 0.15)
        comps.append(H.compare(records, eq, f"{kind}/jax-scan", f"{kind}/torch-eager",
                               goal=3.0 if kind == "relu" else None, scope=kind))
        if f"{kind}/torch-compile" in records:
            comps.append(H.compare(records, eq, f"{kind}/jax-scan", f"{kind}/torch-compile", scope=kind))
        if kind == "relu":
            comps.append(H.compare(records, eq, "relu/jax-scan", "relu/jax-step-loop",
                                   what="relu: lax.scan chunk vs one jitted step per Python call", scope=kind))
        fracs.append(H.flop_fraction(records, f"{kind}/jax-scan", xla, goal=0.60 if kind == "relu" else None))
        if kind == "relu":
            fracs.append(H.flop_fraction(records, "relu/jax-scan", "relu-gemms-only/jax"))
            fracs.append(H.flop_fraction(records, "relu-gemms-only/jax", xla))
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps,
            "flop_fractions": fracs, "skipped_impls": skipped,
            "extra": {"flops_per_step": {k: _flops_per_step(k, cfg["d"], cfg["widths"], cfg["hidden"], cfg["batch"])
                                         for k in ("relu", "quadratic")}}}
