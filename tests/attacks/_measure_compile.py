"""First-call latency of each attack on FC100-100-10 (784-100-100-10, sigmoid) at batch 32, on CPU.

Each attack runs in a FRESH Python process with no persistent compilation cache, so the first call
pays validation, tracing, lowering and XLA compilation; the second call (same shapes, new values)
is the run time alone.  Durations of JAX's own compile stages come from `jax.monitoring`.

    JAX_PLATFORMS=cpu .venv/bin/python tests/attacks/_measure_compile.py [--repeats 2] [attack ...]

Prints one line per attack: first call (wall and process CPU seconds), second call, and the
trace / lower / backend-compile seconds summed over every program compiled during the first call
(the fresh process with the fastest first call of ``--repeats``: on a shared machine wall time
varies with the load, process CPU time much less).  Not collected by pytest (leading underscore).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ATTACKS = ("fgsm", "pgd", "apgd", "lbfgs")
BATCH = 32


def _child(name: str) -> dict:
    import time
    from collections import defaultdict

    import jax
    import jax.numpy as jnp

    stages = defaultdict(float)
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: stages.__setitem__(event, stages[event] + secs))

    import attacks
    from spheres.images import models as im

    module = im.MLP(features=(100, 100), activation="sigmoid")
    variables = module.init(jax.random.key(0), jnp.zeros((1, 784)))

    def f(v, x):                       # per-example, as spheres.images.models.apply_fn
        return module.apply(v, x[None])[0]

    def data(seed):         # labels and L-BFGS targets made here, outside the timed call
        x = jax.random.uniform(jax.random.key(seed), (BATCH, 784))
        y = jax.random.randint(jax.random.key(seed + 1), (BATCH,), 0, 10)
        return x, {"y": y, "t": (y + 1) % 10}

    key = jax.random.key(3)
    calls = {
        "fgsm": lambda x, y: attacks.fgsm(f, x, y["y"], eps=0.1, bounds=(0.0, 1.0), params=variables),
        "pgd": lambda x, y: attacks.pgd(f, x, y["y"], eps=0.1, bounds=(0.0, 1.0), key=key, params=variables),
        "apgd": lambda x, y: attacks.apgd(f, x, y["y"], eps=0.1, bounds=(0.0, 1.0), key=key,
                                          params=variables),
        "lbfgs": lambda x, y: attacks.lbfgs(f, x, y["t"], bounds=(0.0, 1.0), params=variables),
    }
    x, y = data(0)
    jax.block_until_ready((x, y, variables))
    stages.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(calls[name](x, y))
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    compile_stages = dict(stages)
    x, y = data(10)
    jax.block_until_ready((x, y))
    t0 = time.perf_counter()
    jax.block_until_ready(calls[name](x, y))
    second = time.perf_counter() - t0
    pick = lambda word: sum(v for k, v in compile_stages.items() if word in k)  # noqa: E731
    return {"attack": name, "first": first, "first_cpu": first_cpu, "second": second,
            "trace": pick("jaxpr_trace_duration"), "lower": pick("jaxpr_to_mlir_module_duration"),
            "backend": pick("backend_compile_duration")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("attacks", nargs="*", default=list(ATTACKS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child)))
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.setdefault("JAX_PLATFORMS", "cpu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    print(f"{'attack':8s} {'first s':>8s} {'cpu s':>6s} {'second s':>9s} {'trace':>6s} {'lower':>6s} "
          f"{'backend':>8s}")
    for name in args.attacks:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, __file__, "--child", name], env=env,
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{name:8s} failed: {out.stderr.strip().splitlines()[-1]}")
                break
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if runs:
            r = min(runs, key=lambda r: r["first"])
            print(f"{name:8s} {r['first']:8.2f} {r['first_cpu']:6.2f} {r['second']:9.3f} {r['trace']:6.2f} "
                  f"{r['lower']:6.2f} {r['backend']:8.2f}", flush=True)


if __name__ == "__main__":
    main()
