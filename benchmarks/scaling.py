"""(8) Training and evaluation with 1, 2 and 4 simulated CPU devices (``jax.sharding`` data mesh).

One fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` runs everything on
``data`` meshes over the first 1, 2 and 4 devices (all "devices" share this machine's cores, so the
throughput is NOT a scaling figure; the point is that sharded code runs and gives the same answers): ``spheres.sphere_error_rate`` on the initial
model (the same points on every device count: error counts must agree) and ``make_train_chunk``
(the batch sharded over the mesh: the trained function must agree to float tolerance).
"""

from __future__ import annotations

import os


from . import _harness as H
from ._subprocess import run_worker

NAME = "scaling"
TITLE = "(8) 1/2/4 simulated CPU devices"
GOAL = "sharded runs agree with one device (throughput not meaningful on shared CPU cores)"
SIZES = {
    "tiny": dict(devices=(1, 4), d=10, widths=(16, 16), batch=16, steps=5, eval_n=4000, eval_chunk=400,
                 repeats=1),
    "full": dict(devices=(1, 2, 4), d=100, widths=(256, 256), batch=200, steps=50, eval_n=200_000,
                 eval_chunk=10_000, repeats=3),
}


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    records = {}
    flags = os.environ.get("XLA_FLAGS", "")
    env = {"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={max(cfg['devices'])}".strip(),
           "JAX_PLATFORMS": "cpu"}
    out = run_worker("scaling", {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}, env=env)
    runs = {int(k): v for k, v in out["runs"].items()}
    for n, r in runs.items():
        for what, unit, per in (("train", "steps", cfg["steps"]), ("eval", "points", cfg["eval_n"])):
            rec = {"framework": "jax (subprocess)", "unit": unit, "units_per_call": float(per), "flops_per_call": None,
                   "work": {"devices": r["devices"], "batch": cfg["batch"] if what == "train" else cfg["eval_chunk"]},
                   "note": "simulated devices sharing the same cores",
                   "times_s": [per / r[f"{what}_{unit}_per_s_median"]], "first_call_s": r[f"{what}_first_call_s"],
                   "compile_s": None, "steady_backend_compiles": 0}
            H._summarise(rec)
            rec["rate_best"] = r[f"{what}_{unit}_per_s_best"]
            records[f"{what} devices={n}"] = rec
    eq = H.EqualWork()
    ref = runs[cfg["devices"][0]]
    eq.flag("each mesh has the requested number of devices",
            all(r["devices"] == n for n, r in runs.items()) and out["visible_devices"] >= max(runs),
            {str(n): r["devices"] for n, r in runs.items()})
    errs = {str(n): r["eval_errors"] for n, r in runs.items()}
    spread = max(errs.values()) - min(errs.values())
    eq.flag("error counts on the same points agree across device counts (±2 for float ties at the boundary)",
            spread <= 2, errs)
    for n, r in runs.items():
        if n == cfg["devices"][0]:
            continue
        eq.arrays_close(f"logits after training, {n} devices vs {cfg['devices'][0]}", ref["probe_logits"],
                        r["probe_logits"], rtol=1e-3, atol=1e-4, names=(f"d{cfg['devices'][0]}", f"d{n}"))
    goals = [{"what": f"devices={n}: train steps/s, eval points/s (median)",
              "measured": f"{r['train_steps_per_s_median']:.0f} steps/s, {r['eval_points_per_s_median']:.3g} pts/s",
              "best": "-", "goal": "agree (not speed)", "met": None} for n, r in runs.items()]
    for r in runs.values():
        r.pop("probe_logits")
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": [],
            "goals": goals, "extra": {"runs": {str(k): v for k, v in runs.items()}}}
