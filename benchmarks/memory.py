"""(7) Peak resident memory of streaming evaluation from 10⁵ to 10⁸ samples: it should be flat.

One fresh process (apart from the harness's own memory): build the model, compile and run one block
of ``spheres.sphere_error_rate``; then for each ``n``, ascending: reset the peak RSS
(``/proc/self/clear_refs``, Linux), evaluate ``n`` points, read the peak (``VmHWM``). The model is small (the claim is
about the streaming loop, not the model, and 10⁸ points of the d = 500 net would take hours here).
"""

from __future__ import annotations

from . import _harness as H
from ._subprocess import run_worker

NAME = "memory"
TITLE = "(7) Streaming eval, peak RSS vs samples"
GOAL = "flat peak memory from 1e5 to 1e8 samples"
SIZES = {
    "tiny": dict(d=16, widths=(32, 32), chunk=1000, chunks_per_block=10, ns=(10_000, 100_000)),
    "full": dict(d=32, widths=(64, 64), chunk=100_000, chunks_per_block=10,
                 ns=(100_000, 1_000_000, 10_000_000, 100_000_000)),
}
FLAT_MIB = 32.0    # allowed growth of the run's own peak over the warm RSS, across all n
FLAT_REL = 0.05


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    records = {}
    runs = run_worker("memory", {"ns": list(cfg["ns"]), "d": cfg["d"], "widths": list(cfg["widths"]),
                                 "chunk": cfg["chunk"], "chunks_per_block": cfg["chunks_per_block"]})["runs"]
    for r in runs:
        n = r["n"]
        rec = {"framework": "jax (subprocess)", "unit": "points", "units_per_call": float(n), "flops_per_call": None,
               "work": {"model": f"SphereMLP{tuple(cfg['widths'])}", "d": cfg["d"], "chunk": cfg["chunk"]},
               "note": "compile excluded", "times_s": [r["seconds"]], "first_call_s": None,
               "compile_s": None, "steady_backend_compiles": 0, "peak_rss_mib": r["peak_rss_mib"],
               "rss_before_mib": r["rss_before_mib"]}
        H._summarise(rec)
        records[f"sphere_error_rate n={n:.0e}"] = rec
    peaks = [r["peak_rss_mib"] for r in runs]
    growth = max(peaks) - min(peaks)
    flat = growth <= FLAT_MIB + FLAT_REL * min(peaks)
    eq = H.EqualWork()
    eq.same("model and chunk", {k: r["work"] for k, r in records.items()})
    eq.flag("peak RSS was reset before each measured run (else the peak includes compilation)",
            all(r["peak_was_reset"] for r in runs))
    goals = [{"what": f"peak RSS at n={r['n']:.0e}", "measured": f"{r['peak_rss_mib']:.0f} MiB",
              "best": f"before {r['rss_before_mib']:.0f} MiB", "goal": "flat", "met": None} for r in runs]
    goals.append({"what": f"peak RSS growth {cfg['ns'][0]:.0e} -> {cfg['ns'][-1]:.0e}",
                  "measured": f"{growth:.1f} MiB", "best": "-",
                  "goal": f"<= {FLAT_MIB:g} MiB + {FLAT_REL:.0%}", "met": bool(flat)})
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": [],
            "goals": goals, "extra": {"runs": runs}}
