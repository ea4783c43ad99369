"""Subprocess workers for the benchmarks that need a fresh process: peak memory (measured apart from
the harness's own allocations) and simulated device counts (fixed when JAX starts).

    python -m benchmarks._worker memory  '{"n": ..., ...}'
    python -m benchmarks._worker scaling '{"devices": ..., ...}'

Prints one JSON line on stdout.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs) so the next peak is this phase's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory(cfg: dict) -> dict:
    """Compile and run one block, then for each ``n`` (ascending): reset the peak, evaluate, read it."""
    import jax
    import jax.numpy as jnp

    from spheres.sphere.evaluate import sphere_error_rate
    from spheres.sphere.models import SphereMLP, batch_logits

    d, widths, chunk, cpb = cfg["d"], tuple(cfg["widths"]), cfg["chunk"], cfg["chunks_per_block"]
    model = SphereMLP(widths)
    variables = model.init(jax.random.key(0), jnp.zeros((1, d)))

    def logits(v, x):
        return batch_logits(model, v, x)

    kw = dict(key=jax.random.key(1), d=d, radius=1.0, label=0, chunk=chunk, chunks_per_block=cpb,
              progress=False)
    sphere_error_rate(logits, variables, n=chunk * cpb, **kw)            # compile + one block
    runs = []
    for n in cfg["ns"]:
        rss_before = _status_kib("VmRSS")
        reset = _reset_peak()
        t0 = time.perf_counter()
        r = sphere_error_rate(logits, variables, n=n, **kw)
        dt = time.perf_counter() - t0
        runs.append({"n": n, "errors": r.errors, "seconds": dt, "points_per_s": n / dt,
                     "rss_before_mib": rss_before / 1024, "peak_rss_mib": _status_kib("VmHWM") / 1024,
                     "peak_was_reset": reset, "rss_after_mib": _status_kib("VmRSS") / 1024})
    return {"runs": runs}


def scaling(cfg: dict) -> dict:
    """With ``max(devices)`` simulated devices: train and evaluate on meshes over the first 1, 2, 4."""
    import jax
    import numpy as np

    from spheres.sphere.evaluate import sphere_error_rate
    from spheres.sphere.models import SphereMLP, batch_logits
    from spheres.sharding import data_mesh
    from spheres.sphere.train import OnlineData, create_train_state, make_optimizer, make_train_chunk, variables_of

    d, widths, B, K = cfg["d"], tuple(cfg["widths"]), cfg["batch"], cfg["steps"]
    model = SphereMLP(widths)
    state0 = create_train_state(model, make_optimizer("adam", 1e-4), d, key=jax.random.key(0))
    probe = jax.random.normal(jax.random.key(9), (64, d))

    def logits(v, x):
        return batch_logits(model, v, x)

    out = {"visible_devices": jax.device_count(), "runs": {}}
    for n in cfg["devices"]:
        mesh = data_mesh(jax.devices()[:n])
        # evaluation of the INITIAL model: the same function and points on every device count
        kw = dict(key=jax.random.key(2), d=d, radius=1.0, label=0, n=cfg["eval_n"], chunk=cfg["eval_chunk"],
                  chunks_per_block=cfg["eval_n"] // cfg["eval_chunk"], progress=False, mesh=mesh)
        t0 = time.perf_counter()
        errors = sphere_error_rate(logits, variables_of(state0), **kw).errors
        eval_first = time.perf_counter() - t0
        eval_times = []
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            sphere_error_rate(logits, variables_of(state0), **kw)
            eval_times.append(time.perf_counter() - t0)

        run_chunk = make_train_chunk(OnlineData(jax.random.key(1), B, d, 1.3), K, mesh=mesh)
        state = run_chunk.replicate(state0)
        t0 = time.perf_counter()
        state, m = run_chunk(state)
        jax.block_until_ready((state, m))
        train_first = time.perf_counter() - t0
        train_times = []
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            state, m = run_chunk(state)
            jax.block_until_ready((state, m))
            train_times.append(time.perf_counter() - t0)
        out_logits = np.asarray(model.apply(variables_of(jax.device_get(state)), probe, train=False))
        out["runs"][str(n)] = {
            "devices": int(mesh.devices.size), "eval_errors": int(errors), "eval_first_call_s": eval_first,
            "eval_points_per_s_median": cfg["eval_n"] / statistics.median(eval_times),
            "eval_points_per_s_best": cfg["eval_n"] / min(eval_times),
            "train_first_call_s": train_first,
            "train_steps_per_s_median": K / statistics.median(train_times),
            "train_steps_per_s_best": K / min(train_times),
            "train_steps_total": K * (1 + cfg["repeats"]), "final_chunk_loss": float(m.loss),
            "probe_logits": out_logits.tolist()}
    return out


if __name__ == "__main__":
    kind, cfg = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"memory": memory, "scaling": scaling}[kind](cfg)))
