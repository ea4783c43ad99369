"""(3) Manifold (sphere) PGD: gradients/s, same steps and step size, batch >= 256.

The attack is Gilmer et al.'s manifold attack in ``worst_case`` mode (maximise the loss on the
sphere ‖x‖ = 1 for a fixed number of steps: tangent step, renormalise, accept only if the loss
rises, else halve the step). It runs on the ReLU net d-1000-1000-1, briefly trained with the
library's training loop, from inner-sphere points, with no random start (so every implementation
follows the same trajectory up to float rounding):

* ``jax-sphere_pgd``: ``attacks.sphere_pgd(..., mode="worst_case")`` (per-example, vmapped, jitted);
* ``jax-plain``: the same algorithm written directly as ``jit(fori_loop(vmap(value_and_grad)))``:
  the floor the library's generality should not cost much above;
* ``torch-loop``: the same algorithm as a plain PyTorch loop, written the way the popular attack
  libraries write PGD (Python loop, ``torch.autograd.grad`` on the summed loss, in-place masks);
* the matmul FLOP-rate reference in the same rounds.

Work per call: B·(steps + 1) gradient evaluations (one at the start, one per step). FLOPs per
gradient: 4Σ (forward 2Σ plus the backward to the input 2Σ, Σ = Σ in·out). Equal work: same model
(logits agree), same B, steps, step size and mode; attack outcomes (success rate, mean L2 distance,
mean final loss) within noise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import attacks
from spheres.sphere import data as sdata
from spheres.sphere.models import SphereMLP, count_params
from spheres.sphere.train import OnlineData, create_train_state, make_optimizer, make_train_chunk, variables_of

from . import _harness as H

NAME = "sphere_pgd"
TITLE = "(3) Manifold PGD on the sphere, ReLU net"
GOAL = ">= 2.5x a plain PyTorch loop and >= 75% of the matmul FLOP rate at batch >= 256"
SIZES = {
    "tiny": dict(d=20, widths=(32, 32), train_steps=200, batch=16, steps=10, step_size=0.05,
                 probe=256, repeats=2),
    "full": dict(d=500, widths=(1000, 1000), train_steps=500, batch=256, steps=100, step_size=0.01,
                 probe=2048, repeats=5),
}


def trained_sphere_mlp(d, widths, steps, *, lr=1e-3, batch=50):
    """A SphereMLP trained for ``steps`` steps with the library's loop (a model with a boundary)."""
    model = SphereMLP(tuple(widths))
    state = create_train_state(model, make_optimizer("adam", lr), d, key=jax.random.key(0))
    chunk = make_train_chunk(OnlineData(jax.random.key(1), batch, d, 1.3), steps)
    state, _ = chunk(state)
    return model, variables_of(state)


def _safe_normalize(v):
    n2 = jnp.sum(v * v, axis=-1, keepdims=True)
    return jnp.where(n2 > 0, v * jax.lax.rsqrt(jnp.where(n2 > 0, n2, 1.0)), 0.0)


def plain_jax_attack(model, steps):
    """``jit(fori_loop(vmap(value_and_grad)))`` of the worst-case sphere attack, label 0, radius 1."""

    def objective(v, x):
        z = model.apply(v, x[None], train=False)[0]
        return jax.nn.softplus(z)  # sigmoid cross-entropy of label 0

    vg = jax.vmap(jax.value_and_grad(objective, argnums=1), in_axes=(None, 0))

    def tangent(g, x):
        u = _safe_normalize(x)
        return _safe_normalize(g - jnp.sum(g * u, -1, keepdims=True) * u)

    @jax.jit
    def run(v, x0, alpha0):
        x = _safe_normalize(x0)
        obj, g = vg(v, x)

        def body(_, c):
            x, obj, g, a = c
            cand = _safe_normalize(x + a[:, None] * tangent(g, x))
            o2, g2 = vg(v, cand)
            acc = o2 > obj
            return (jnp.where(acc[:, None], cand, x), jnp.where(acc, o2, obj),
                    jnp.where(acc[:, None], g2, g), jnp.where(acc, a, 0.5 * a))

        x, obj, g, a = jax.lax.fori_loop(0, steps, body, (x, obj, g, alpha0))
        z = model.apply(v, x, train=False)
        return x, z > 0, jnp.linalg.norm(x - x0, axis=-1), obj

    return run


def torch_attack(ctx, tmodel, steps, step_size):
    """The same attack as a plain PyTorch loop (label 0, radius 1)."""
    torch = ctx.torch
    F = torch.nn.functional

    def normalize(v):
        n = v.norm(dim=1, keepdim=True)
        return torch.where(n > 0, v / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(v))

    def obj_grad(x):
        x = x.detach().requires_grad_(True)
        obj = F.softplus(tmodel(x))
        (g,) = torch.autograd.grad(obj.sum(), x)
        return obj.detach(), g

    def run(x0):
        x = normalize(x0)
        obj, g = obj_grad(x)
        a = torch.full((x.shape[0],), step_size)
        for _ in range(steps):
            u = normalize(x)
            t = normalize(g - (g * u).sum(1, keepdim=True) * u)
            cand = normalize(x + a[:, None] * t)
            o2, g2 = obj_grad(cand)
            acc = o2 > obj
            x = torch.where(acc[:, None], cand, x)
            obj = torch.where(acc, o2, obj)
            g = torch.where(acc[:, None], g2, g)
            a = torch.where(acc, a, 0.5 * a)
        with torch.no_grad():
            z = tmodel(x)
        return x, z > 0, (x - x0).norm(dim=1), obj

    return run


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    d, widths, B, K, alpha = cfg["d"], tuple(cfg["widths"]), cfg["batch"], cfg["steps"], cfg["step_size"]
    model, variables = trained_sphere_mlp(d, widths, cfg["train_steps"])
    x0 = sdata.sample_sphere(jax.random.key(5), B, d, 1.0)
    y = jnp.zeros((B,), jnp.int32)
    per_grad = 4 * H.dense_flops([d, *widths, 1])
    grads = B * (K + 1)
    work = {"model": f"SphereMLP{widths} (trained {cfg['train_steps']} steps)", "d": d,
            "params": count_params(variables), "batch": B, "steps": K, "step_size": alpha,
            "mode": "worst_case", "random_start": False}

    logit = functools.partial(_logit, model)   # one object: the attack's compile cache keys on it
    impls = [
        H.Impl("jax-sphere_pgd", "jax",
               lambda: attacks.sphere_pgd(logit, x0, y, step_size=alpha, num_steps=K, mode="worst_case",
                                          params=variables),
               grads, "gradients", per_grad * grads, work=work),
    ]
    plain = plain_jax_attack(model, K)
    alphas = jnp.full((B,), alpha, jnp.float32)
    impls.append(H.Impl("jax-plain", "jax", lambda: plain(variables, x0, alphas), grads, "gradients",
                        per_grad * grads, work=work, note="jit(fori_loop(vmap(value_and_grad)))"))
    skipped = []
    eq = H.EqualWork()
    if ctx.torch is not None:
        torch = ctx.torch
        from . import _torch_models as TM

        tmodel = TM.sphere_mlp(variables).eval()
        for p in tmodel.parameters():
            p.requires_grad_(False)
        tx0 = torch.from_numpy(np.array(x0))
        tattack = torch_attack(ctx, tmodel, K, alpha)
        twork = {**work, "params": int(sum(p.numel() for p in tmodel.parameters()))}
        impls.append(H.Impl("torch-loop", "torch", lambda: tattack(tx0), grads, "gradients",
                            per_grad * grads, work=twork))
        with torch.no_grad():
            eq.arrays_close("logits at the start points (JAX vs PyTorch)",
                            np.asarray(model.apply(variables, x0, train=False)), tmodel(tx0).numpy(),
                            rtol=1e-4, atol=1e-5, names=("jax", "torch"))
    else:
        skipped.append({"name": "torch-loop", "reason": ctx.torch_reason})
    impls += H.matmul_probe(ctx, cfg["probe"])
    records, outputs = H.measure(impls, cfg["repeats"])

    outcomes, dists, losses = {}, {}, {}
    res = outputs["jax-sphere_pgd"]
    outcomes["jax-sphere_pgd"] = np.asarray(res.success)
    dists["jax-sphere_pgd"] = np.asarray(res.distance)
    losses["jax-sphere_pgd"] = np.asarray(res.loss)
    _, succ, dist, obj = outputs["jax-plain"]
    outcomes["jax-plain"], dists["jax-plain"], losses["jax-plain"] = map(np.asarray, (succ, dist, obj))
    if "torch-loop" in outputs:
        _, succ, dist, obj = outputs["torch-loop"]
        outcomes["torch-loop"], dists["torch-loop"], losses["torch-loop"] = (
            succ.numpy(), dist.numpy(), obj.numpy())
    names = [k for k in records if "matmul" not in k]
    eq.same("model, batch, steps, step size, mode",
            {k: {f: records[k]["work"][f] for f in ("params", "batch", "steps", "step_size", "mode")}
             for k in names})
    eq.rate_within_noise("success rate", outcomes)
    eq.mean_within_noise("mean L2 distance ‖x_adv − x‖", dists, rtol=0.01)
    eq.mean_within_noise("mean final loss", losses, rtol=0.01)
    xla = f"xla-matmul-{cfg['probe']}"
    comps = [H.compare(records, eq, "jax-sphere_pgd", "torch-loop", goal=2.5),
             H.compare(records, eq, "jax-plain", "torch-loop"),
             H.compare(records, eq, "jax-sphere_pgd", "jax-plain", what="library vs plain JAX")]
    fracs = [H.flop_fraction(records, "jax-sphere_pgd", xla, goal=0.75),
             H.flop_fraction(records, "jax-plain", xla)]
    if "torch-loop" in records:
        fracs.append(H.flop_fraction(records, "torch-loop", f"torch-matmul-{cfg['probe']}"))
    agree = {k: float(np.mean(v == outcomes["jax-sphere_pgd"])) for k, v in outcomes.items()}
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps,
            "flop_fractions": fracs, "skipped_impls": skipped,
            "extra": {"flops_per_gradient": per_grad,
                      "per_example_success_agreement_with_library": agree,
                      "success_rate": {k: float(v.mean()) for k, v in outcomes.items()},
                      "mean_distance": {k: float(v.mean()) for k, v in dists.items()}}}


def _logit(model, variables, x):
    return model.apply(variables, x[None], train=False)[0]
