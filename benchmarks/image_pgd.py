"""(4) L∞ and L2 PGD on an image MLP (Fashion-MNIST) against torchattacks' PGD / PGDL2.

Model: a ReLU MLP 784-1000-1000-10 trained briefly with the library's loop; the PyTorch copy has the
same weights. Same test images, same ε, step size, steps, random start and box [0, 1]:

* ``jax-pgd``: ``attacks.pgd`` (per-example, vmapped, jitted; keeps the best iterate);
* ``jax-plain``: ``jit(fori_loop(grad))`` over the batch, the textbook loop (returns the last iterate);
* ``torch-eager``: the same loop as torchattacks' ``PGD`` / ``PGDL2`` written out in eager PyTorch
  (`benchmarks._torch_models.pgd_eager`; the model's parameters have ``requires_grad=False``, so no
  weight gradients are computed);
* ``torchattacks``: ``torchattacks.PGD`` (L∞) / ``torchattacks.PGDL2`` (L2), as its users call it,
  when torchattacks is importable (it is not in the bench extra: it requires torchvision, which
  pulls a CUDA build of torch);
* the matmul FLOP-rate reference in the same rounds.

Work per call: B·steps gradients (4Σ FLOPs each, Σ = Σ in·out). Equal work: same model (logits
agree on the clean images), batch, ε, step size, steps, random start; robust outcome (success rate,
mean distance in the attack's norm) within noise: the random starts differ between frameworks (the
library's L2 start is uniform in the ball's volume, radius ε·U^(1/n) ≈ ε; torchattacks' radius is
ε·U, so the steps × step size must exceed ε for the returned distances to agree), and the library
returns the best iterate where torchattacks returns the last.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import attacks
from spheres.images import models as im

from . import _harness as H
from . import _image

NAME = "image_pgd"
TITLE = "(4) PGD on an image MLP, L∞ and L2"
GOAL = ">= 2.5x PyTorch eager PGD (torchattacks' loop) and >= 75% of the matmul FLOP rate"
SIZES = {
    "tiny": dict(widths=(32, 32), n_train=1000, batch=16, steps=3, probe=256, repeats=2,
                 linf=dict(eps=0.1, step_size=0.05), l2=dict(eps=1.0, step_size=0.5)),
    "full": dict(widths=(1000, 1000), n_train=20_000, batch=256, steps=20, probe=2048, repeats=5,
                 linf=dict(eps=0.1, step_size=0.01), l2=dict(eps=1.0, step_size=0.1)),
}


def plain_pgd(model, norm: str, steps: int):
    """The textbook batched PGD: ``jit(fori_loop(grad))``, random start, last iterate."""

    def loss(v, x, y):
        logits = model.apply(v, x, train=False)
        return jnp.sum(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0])

    grad = jax.grad(loss, argnums=1)

    def l2n(v):
        return jnp.sqrt(jnp.sum(v * v, axis=(1, 2), keepdims=True))

    @jax.jit
    def run(v, x0, y, key, eps, alpha):
        if norm == "linf":
            x = x0 + jax.random.uniform(key, x0.shape, minval=-eps, maxval=eps)
        else:
            kd, kr = jax.random.split(key)
            delta = jax.random.normal(kd, x0.shape)
            r = jax.random.uniform(kr, (x0.shape[0], 1, 1))
            x = x0 + delta / l2n(delta) * r * eps
        x = jnp.clip(x, 0.0, 1.0)

        def body(_, x):
            g = grad(v, x, y)
            if norm == "linf":
                x = x + alpha * jnp.sign(g)
                x = x0 + jnp.clip(x - x0, -eps, eps)
            else:
                x = x + alpha * g / (l2n(g) + 1e-10)
                delta = x - x0
                x = x0 + delta * jnp.minimum(1.0, eps / (l2n(delta) + 1e-12))
            return jnp.clip(x, 0.0, 1.0)

        x = jax.lax.fori_loop(0, steps, body, x)
        pred = jnp.argmax(model.apply(v, x, train=False), -1)
        d = x - x0
        dist = jnp.max(jnp.abs(d), axis=(1, 2)) if norm == "linf" else l2n(d)[:, 0, 0]
        return x, pred != y, dist

    return run


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    x_np, y_np = _image.test_examples(cfg["batch"])
    widths, B, K = tuple(cfg["widths"]), cfg["batch"], cfg["steps"]
    model = im.MLP(widths, "relu")
    variables, test_acc = _image.trained(model, cfg["n_train"])
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    per_grad = 4 * H.dense_flops([784, *widths, 10])
    grads = B * K
    logit = im.apply_fn(model)
    base = {"model": f"MLP784-{'-'.join(map(str, widths))}-10 relu (Fashion-MNIST, {cfg['n_train']} ex, 1 epoch)",
            "params": im.count_params(variables), "batch": B, "steps": K, "random_start": True,
            "bounds": [0.0, 1.0]}
    impls, skipped = [], []
    eq = H.EqualWork()
    tmodel = None
    if ctx.torch is not None:
        torch = ctx.torch
        from . import _torch_models as TM

        tmodel = TM.image_mlp(variables, "relu").eval()
        for p in tmodel.parameters():
            p.requires_grad_(False)
        tx = torch.from_numpy(x_np[:, None].copy())   # (B, 1, 28, 28), as torchattacks expects
        ty = torch.from_numpy(y_np.astype(np.int64))
        with torch.no_grad():
            eq.arrays_close("logits on the clean images (JAX vs PyTorch)",
                            np.asarray(im.batch_apply_fn(model)(variables, x)), tmodel(tx).numpy(),
                            rtol=1e-4, atol=1e-5, names=("jax", "torch"))
    for norm in ("linf", "l2"):
        eps, alpha = cfg[norm]["eps"], cfg[norm]["step_size"]
        work = {**base, "norm": norm, "eps": eps, "step_size": alpha}
        impls.append(H.Impl(f"{norm}/jax-pgd", "jax", functools.partial(
            attacks.pgd, logit, x, y, eps=eps, norm=norm, step_size=alpha, num_steps=K,
            bounds=(0.0, 1.0), random_start=True, key=jax.random.key(7), params=variables),
            grads, "gradients", per_grad * grads, work=work))
        if not ctx.tiny:  # the textbook loop is a diagnostic: not compiled at size tiny
            plain = plain_pgd(model, norm, K)
            impls.append(H.Impl(f"{norm}/jax-plain", "jax", functools.partial(
                plain, variables, x, y, jax.random.key(8), eps, alpha), grads, "gradients",
                per_grad * grads, work=work, note="jit(fori_loop(grad)), last iterate"))
        if tmodel is not None:
            from . import _torch_models as TM

            gen = ctx.torch.Generator().manual_seed(0)
            impls.append(H.Impl(f"{norm}/torch-eager", "torch", functools.partial(
                TM.pgd_eager, tmodel, tx, ty, eps=eps, alpha=alpha, steps=K, norm=norm, generator=gen),
                grads, "gradients", per_grad * grads, work={**work, "params": int(sum(
                    p.numel() for p in tmodel.parameters()))}, note="torchattacks' loop, eager"))
        if ctx.torchattacks is not None:
            ta = ctx.torchattacks
            atk = (ta.PGD(tmodel, eps=eps, alpha=alpha, steps=K, random_start=True) if norm == "linf"
                   else ta.PGDL2(tmodel, eps=eps, alpha=alpha, steps=K, random_start=True))
            twork = {**work, "params": int(sum(p.numel() for p in tmodel.parameters()))}
            impls.append(H.Impl(f"{norm}/torchattacks", "torch", functools.partial(atk, tx, ty), grads,
                                "gradients", per_grad * grads, work=twork,
                                note=f"torchattacks.{type(atk).__name__}"))
        else:
            skipped.append({"name": f"{norm}/torchattacks", "reason": ctx.torchattacks_reason})
    impls += H.matmul_probe(ctx, cfg["probe"])
    ctx.torch is not None and ctx.torch.manual_seed(0)
    records, outputs = H.measure(impls, cfg["repeats"])

    comps, fracs, extra = [], [], {"dataset": _image.dataset_label(), "test_accuracy_2000": test_acc,
                                   "flops_per_gradient": per_grad}
    xla = f"xla-matmul-{cfg['probe']}"
    for norm in ("linf", "l2"):
        names = [k for k in records if k.startswith(norm + "/")]
        eq.scope = norm
        eq.same(f"{norm}: model, batch, eps, step size, steps, random start",
                {k: {f: records[k]["work"][f] for f in ("params", "batch", "eps", "step_size", "steps",
                                                         "random_start")} for k in names})
        succ, dist = {}, {}
        r = outputs[f"{norm}/jax-pgd"]
        succ[f"{norm}/jax-pgd"], dist[f"{norm}/jax-pgd"] = np.asarray(r.success), np.asarray(r.distance)
        if f"{norm}/jax-plain" in outputs:
            _, s, dd = outputs[f"{norm}/jax-plain"]
            succ[f"{norm}/jax-plain"], dist[f"{norm}/jax-plain"] = np.asarray(s), np.asarray(dd)
        for impl in (f"{norm}/torch-eager", f"{norm}/torchattacks"):
            if impl not in outputs:
                continue
            xa = outputs[impl]
            with ctx.torch.no_grad():
                pred = tmodel(xa).argmax(1).numpy()
            delta = (xa - tx).reshape(B, -1).numpy()
            succ[impl] = pred != y_np
            dist[impl] = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
        eq.rate_within_noise(f"{norm}: success rate", succ)
        eq.mean_within_noise(f"{norm}: mean distance ({norm})", dist, rtol=0.02)
        extra[f"{norm}_success_rate"] = {k: float(v.mean()) for k, v in succ.items()}
        extra[f"{norm}_mean_distance"] = {k: float(v.mean()) for k, v in dist.items()}
        comps.append(H.compare(records, eq, f"{norm}/jax-pgd", f"{norm}/torch-eager", goal=2.5, scope=norm))
        comps.append(H.compare(records, eq, f"{norm}/jax-pgd", f"{norm}/torchattacks", scope=norm))
        comps.append(H.compare(records, eq, f"{norm}/jax-plain", f"{norm}/torch-eager", scope=norm))
        comps.append(H.compare(records, eq, f"{norm}/jax-pgd", f"{norm}/jax-plain",
                               what=f"{norm}: library vs plain JAX", scope=norm))
        fracs.append(H.flop_fraction(records, f"{norm}/jax-pgd", xla, goal=0.75))
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps,
            "flop_fractions": fracs, "skipped_impls": skipped, "extra": extra}
