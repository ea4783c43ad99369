"""(1) Evaluation throughput of the 500-1000-1000-1 ReLU net (Gilmer's ReLU.w1000.2), float32.

Implementations, all on the same parameters:

* ``jax-batch_logits``: ``jit(spheres.batch_logits)`` on a fixed batch (the model alone; on CPU
  in row blocks of at most 2,048, ``block="auto"``: one 10,000-row call ran at 68 % of the matmul
  rate, the blocks at 92 %);
* ``jax-sphere_error_rate``: ``spheres.sphere_error_rate``, the streaming evaluation the experiments
  run (sampling the sphere inside the jitted loop, counting errors): the end-to-end figure;
* ``torch-eager``: the same network in PyTorch, ``inference_mode``, same batch, same threads;
* ``xla-matmul-N`` / ``torch-matmul-N``: the FLOP-rate reference, timed in the same rounds.

FLOPs count the dense layers only (2·Σ in·out per example); BatchNorm and ReLU are not counted.
Equal work: same parameter count and batch, and the JAX and PyTorch logits agree on the same inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from spheres.sphere import data as sdata
from spheres.sphere.evaluate import sphere_error_rate
from spheres.sphere.models import SphereMLP, batch_logits, count_params

from . import _harness as H

NAME = "eval"
TITLE = "(1) Eval throughput, ReLU net d-1000-1000-1"
GOAL = "jit batch_logits >= 70% of the jitted-matmul FLOP rate"
SIZES = {
    "tiny": dict(d=50, widths=(64, 64), batch=256, stream_n=1024, stream_chunk=256, probe=256, repeats=2),
    "full": dict(d=500, widths=(1000, 1000), batch=10_000, stream_n=50_000, stream_chunk=10_000,
                 probe=2048, repeats=5),
}


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    d, widths, B = cfg["d"], tuple(cfg["widths"]), cfg["batch"]
    model = SphereMLP(widths)
    variables = model.init(jax.random.key(0), jnp.zeros((1, d)))
    # non-trivial running statistics, so the eval-mode BatchNorm is exercised on both sides
    ks = jax.random.split(jax.random.key(1), 2 * len(widths))
    stats = {f"BatchNorm_{i}": {"mean": 0.01 * jax.random.normal(ks[2 * i], (w,)),
                                "var": jax.random.uniform(ks[2 * i + 1], (w,), minval=0.5, maxval=2.0) / d}
             for i, w in enumerate(widths)}
    variables = {"params": variables["params"], "batch_stats": stats}
    x, _ = sdata.sample_two_spheres(jax.random.key(2), B, d)
    per_example = 2 * H.dense_flops([d, *widths, 1])

    logits_fn = jax.jit(lambda v, x: batch_logits(model, v, x))

    def stream_logits(v, x):  # one object for the run: sphere_error_rate caches its compile on it
        return batch_logits(model, v, x)

    n, chunk = cfg["stream_n"], cfg["stream_chunk"]
    work = {"model": f"SphereMLP{widths}", "d": d, "params": count_params(variables), "dtype": "float32"}
    impls = [
        H.Impl("jax-batch_logits", "jax", lambda: logits_fn(variables, x), B, "examples",
               per_example * B, work={**work, "batch": B}),
        H.Impl("jax-sphere_error_rate", "jax",
               lambda: sphere_error_rate(stream_logits, variables, key=jax.random.key(3), d=d, radius=1.0,
                                         label=0, n=n, chunk=chunk, chunks_per_block=n // chunk,
                                         progress=False).errors,
               n, "examples", per_example * n, work={**work, "batch": chunk, "points": n},
               note="streaming: samples the sphere + counts errors inside one jitted loop"),
    ]
    eq = H.EqualWork()
    skipped = []
    if ctx.torch is not None:
        torch = ctx.torch
        from . import _torch_models as TM

        tmodel = TM.sphere_mlp(variables).eval()
        tx = torch.from_numpy(np.array(x))

        def torch_eval():
            with torch.inference_mode():
                return tmodel(tx)

        impls.append(H.Impl("torch-eager", "torch", torch_eval, B, "examples", per_example * B,
                            work={**work, "params": int(sum(p.numel() for p in tmodel.parameters())),
                                  "batch": B}))
    else:
        skipped.append({"name": "torch-eager", "reason": ctx.torch_reason})
    impls += H.matmul_probe(ctx, cfg["probe"])
    records, outputs = H.measure(impls, cfg["repeats"])
    if "torch-eager" in outputs:
        eq.arrays_close("logits, JAX vs PyTorch, same inputs", outputs["jax-batch_logits"],
                        outputs["torch-eager"].numpy(), rtol=1e-4, atol=1e-5, names=("jax", "torch"))
    model_impls = [k for k in records if "matmul" not in k]
    eq.same("parameter count", {k: records[k]["work"]["params"] for k in model_impls})
    eq.same("batch", {k: records[k]["work"]["batch"] for k in ("jax-batch_logits", "torch-eager") if k in records})
    xla = f"xla-matmul-{cfg['probe']}"
    comps = [H.compare(records, eq, "jax-batch_logits", "torch-eager", what="JAX vs PyTorch eval")]
    fracs = [H.flop_fraction(records, "jax-batch_logits", xla, goal=0.70),
             H.flop_fraction(records, "jax-sphere_error_rate", xla)]
    if ctx.torch is not None:
        fracs.append(H.flop_fraction(records, "torch-eager", f"torch-matmul-{cfg['probe']}"))
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(),
            "comparisons": comps, "flop_fractions": fracs, "skipped_impls": skipped,
            "extra": {"flops_per_example": per_example}}
