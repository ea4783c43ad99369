"""The machine's FLOP rate: a jitted float32 matmul in XLA and ``torch.mm`` on the same threads.

Every benchmark with a FLOP-rate goal also times this matmul inside its own rounds (the load on a
shared machine moves); this standalone figure is the headline reference.
"""

from __future__ import annotations

from . import _harness as H

NAME = "matmul"
TITLE = "FLOP rate reference: n×n float32 matmul"
GOAL = "reference only (XLA vs PyTorch BLAS)"
SIZES = {"tiny": dict(n=256, repeats=2), "full": dict(n=2048, repeats=7)}


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    impls = H.matmul_probe(ctx, cfg["n"])
    records, _ = H.measure(impls, cfg["repeats"])
    eq = H.EqualWork()
    eq.same("matmul shape", {k: r["work"]["shape"] for k, r in records.items()})
    comps = []
    if len(impls) == 2:
        comps.append(H.compare(records, eq, impls[0].name, impls[1].name, what="XLA vs PyTorch matmul"))
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps}
