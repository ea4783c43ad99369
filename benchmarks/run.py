"""Run the benchmarks side by side in one process and publish the figures.

    python -m benchmarks.run [--size tiny|full] [--only NAME[,NAME...]] [--out DIR]

Writes ``DIR/<machine>-<date>.json`` (default ``benchmarks/results``) and ``DIR/latest.md`` and
prints the markdown table (``--size tiny`` and ``--only`` runs add ``-tiny`` / ``-partial`` to both
names, so they never replace the full run's; a second run of the day adds its start time,
``<machine>-<date>-<HHMMSS>.json``, and keeps the first). The JSON records the machine, versions, thread counts, the load average
before and after every benchmark, and for every implementation each repeat's time, min and median,
the compile time apart from the steady state, and the equal-work checks that gate every speed ratio.
Figures taken while other processes use more than 10% of the CPUs are flagged provisional.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

from . import _harness as H

# module -> benchmark name (the name is what --only takes), in run order
BENCHMARKS = {"matmul": "matmul", "eval_throughput": "eval", "training": "train", "conv_training": "conv_train",
              "sphere_attack": "sphere_pgd", "image_pgd": "image_pgd", "lbfgs": "lbfgs",
              "error_rate": "error_rate", "memory": "memory", "scaling": "scaling",
              "nearest_bracket": "nearest_bracket", "paper_estimates": "paper_estimates"}
SCHEMA_VERSION = 1
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_slug() -> str:
    """A file-name-safe machine tag: CPU model and core count (the hostname of a container is noise)."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-") or "cpu"
    return f"{slug}-{os.cpu_count()}cpu"


def _version(mod: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(mod)
    except PackageNotFoundError:
        return None


def machine_info() -> dict:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"slug": machine_slug(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "schedulable_cpus": H.cpu_threads(), "mem_total_gib": mem,
            "platform": platform.platform(), "python": platform.python_version()}


def versions(ctx: H.Context) -> dict:
    import jax

    out = {p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "torch",
                                    "torchattacks", "jaxopt")}
    out["jax_backend"] = jax.default_backend()
    out["jax_devices"] = [str(d) for d in jax.devices()]
    if ctx.torch is not None:
        cfg = ctx.torch.__config__.show()
        blas = [ln.strip() for ln in cfg.splitlines() if re.search(r"BLAS|LAPACK|MKL|OpenMP", ln)]
        out["torch_build"] = blas[:8]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
        out["git_commit"] = commit or None
        out["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def thread_info(ctx: H.Context) -> dict:
    out = {"jax_cpu_threads": ctx.threads,
           "jax_threads_source": "XLA CPU default: one intra-op thread per schedulable core "
                                 "(os.sched_getaffinity)",
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
           "OPENBLAS_NUM_THREADS (NumPy/SciPy baselines)": os.environ.get("OPENBLAS_NUM_THREADS")}
    if ctx.torch is not None:
        out["torch_num_threads"] = ctx.torch.get_num_threads()
        out["torch_interop_threads"] = ctx.torch.get_num_interop_threads()
        out["torch_omp_wait_policy"] = ctx.omp_wait_policy
    return out


# --------------------------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------------------------


def omp_wait_policy(choice: str) -> str:
    """Set ``OMP_WAIT_POLICY`` for PyTorch's OpenMP pool before torch is imported; returns why.

    libgomp's default lets idle threads spin. On a machine with more runnable threads than cores,
    a spinning thread that holds a core delays the thread the barrier waits for, and every small op
    pays for it: measured here, a PyTorch forward-backward of the 500-1000-1000-1 net at batch 256
    with 2 threads took 260 ms per step by default and 47 ms with ``PASSIVE`` at load average ~9 on
    2 cores (57 ms with one thread). XLA's thread pool does not use OpenMP. ``auto`` picks
    ``PASSIVE`` when the 1-minute load average exceeds half the core count, else leaves the default.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (set by the caller)"
    if choice == "auto":
        load = H.loadavg()
        cpus = H.cpu_threads()
        if load and load[0] > 0.5 * cpus:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            return (f"OMP_WAIT_POLICY=PASSIVE (auto: load average {load[0]:.1f} > {cpus}/2; spinning "
                    f"OpenMP threads make PyTorch several times slower on an oversubscribed machine)")
        return "libgomp default (auto: machine not loaded)"
    if choice in ("passive", "active"):
        os.environ["OMP_WAIT_POLICY"] = choice.upper()
        return f"OMP_WAIT_POLICY={choice.upper()} (--omp-wait-policy)"
    return "libgomp default (--omp-wait-policy default)"


def make_context(size: str, *, use_torch: bool, compile_torch: bool, omp_policy: str = "auto") -> H.Context:
    ctx = H.Context(size=size, threads=H.cpu_threads(), compile_torch=compile_torch)
    H.COMPILES.register()
    if use_torch:
        ctx.omp_wait_policy = omp_wait_policy(omp_policy)
    if not use_torch:
        ctx.torch_reason = ctx.torchattacks_reason = "disabled (--no-torch)"
        return ctx
    try:
        import torch
    except ImportError as e:
        ctx.torch_reason = ctx.torchattacks_reason = f"torch not importable ({e}); install the bench extra"
        return ctx
    torch.set_num_threads(ctx.threads)
    ctx.torch = torch
    try:
        import torchattacks
    except Exception as e:  # ImportError, or a version clash at import time
        ctx.torchattacks_reason = f"torchattacks not importable ({type(e).__name__}: {e})"
    else:
        ctx.torchattacks = torchattacks
    return ctx


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def run_one(module_name: str, ctx: H.Context, log) -> dict:
    mod = importlib.import_module(f"benchmarks.{module_name}")
    rec = {"name": mod.NAME, "module": module_name, "title": mod.TITLE, "goal": mod.GOAL,
           "size": ctx.size, "loadavg_before": H.loadavg()}
    log(f"[bench] {mod.NAME}: {mod.TITLE} (load {rec['loadavg_before']}) ...")
    t0, cpu0 = time.perf_counter(), H.cpu_sample()
    try:
        out = mod.run(ctx)
        rec["status"] = out.pop("status", "ok")
        rec.update(out)
    except Exception as e:  # a broken benchmark is recorded, the others still run
        rec["status"] = "error"
        rec["reason"] = f"{type(e).__name__}: {e}"
        rec["traceback"] = traceback.format_exc()[-4000:]
    rec["wall_s"] = time.perf_counter() - t0
    rec["loadavg_after"] = H.loadavg()
    rec["others_cpu_share"] = H.others_cpu_share(cpu0, H.cpu_sample(), H.cpu_threads())
    log(f"[bench] {mod.NAME}: {rec['status']} in {rec['wall_s']:.1f} s (load {rec['loadavg_after']}, "
        f"other processes {rec['others_cpu_share']})"
        + (f" -- {rec.get('reason')}" if rec["status"] != "ok" else ""))
    return rec


OTHERS_MAX = 0.10   # other processes' share of the CPUs above which figures are provisional


def load_note(benchmarks: list[dict], cpus: int) -> dict:
    """Provisional when other processes took more than `OTHERS_MAX` of the CPUs during any
    benchmark (measured from /proc/stat minus our own CPU time; the load average counts the
    benchmark's own threads, so it only serves where /proc/stat is missing)."""
    loads = [b[k][0] for b in benchmarks for k in ("loadavg_before", "loadavg_after") if b.get(k)]
    shares = [b["others_cpu_share"] for b in benchmarks if b.get("others_cpu_share") is not None]
    worst_load = max(loads) if loads else None
    if shares:
        worst = max(shares)
        provisional = worst > OTHERS_MAX
        text = (f"other processes used {min(shares):.0%}-{worst:.0%} of the {cpus} CPUs during the "
                f"benchmarks (1-min load average, our threads included, {min(loads):.1f}-{worst_load:.1f}): "
                + (f"the machine was shared, figures are PROVISIONAL (> {OTHERS_MAX:.0%}; ratios measured "
                   "in interleaved rounds are more robust than absolute rates)" if provisional
                   else "the machine was quiet"))
    else:
        worst = None
        provisional = worst_load is None or worst_load > cpus + 0.5
        text = (f"1-min load average {min(loads):.1f}-{worst_load:.1f} on {cpus} CPUs (no /proc/stat): "
                + ("figures are PROVISIONAL" if provisional else "machine quiet enough for final figures")
                if loads else "load unavailable")
    return {"provisional": provisional, "max_others_cpu_share": worst, "max_loadavg_1min": worst_load,
            "text": text}


def _clean(obj):
    """JSON-safe copy: NumPy scalars to Python, non-finite floats to strings ("inf", "nan")."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("tiny", "full"), default="full",
                    help="tiny: seconds, for tests; full: the figures the README quotes")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (or module names)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results directory")
    ap.add_argument("--no-torch", action="store_true", help="skip every PyTorch implementation")
    ap.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (slow to compile)")
    ap.add_argument("--omp-wait-policy", choices=("auto", "passive", "active", "default"), default="auto",
                    help="PyTorch's OpenMP idle policy (auto: PASSIVE on a loaded machine)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    modules = list(BENCHMARKS)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        names = BENCHMARKS
        unknown = [w for w in wanted if w not in names and w not in names.values()]
        if unknown:
            ap.error(f"unknown benchmark(s) {unknown}; choose from {list(names.values())}")
        modules = [m for m in BENCHMARKS if m in wanted or names[m] in wanted]

    ctx = make_context(args.size, use_torch=not args.no_torch, compile_torch=not args.no_torch_compile,
                       omp_policy=args.omp_wait_policy)
    started = _dt.datetime.now().astimezone()
    doc = {"schema_version": SCHEMA_VERSION, "started": started.isoformat(timespec="seconds"),
           "size": args.size, "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
           "machine": machine_info(), "versions": versions(ctx), "threads": thread_info(ctx),
           "torch_status": "ok" if ctx.torch is not None else ctx.torch_reason,
           "torchattacks_status": "ok" if ctx.torchattacks is not None else ctx.torchattacks_reason,
           "loadavg_start": H.loadavg(), "benchmarks": []}
    for m in modules:
        doc["benchmarks"].append(run_one(m, ctx, log))
    doc["loadavg_end"] = H.loadavg()
    doc["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    doc["load"] = load_note(doc["benchmarks"], doc["machine"]["cpu_count"] or 1)

    from .report import markdown

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A partial (--only) run never replaces the day's full results or latest.md.
    suffix = ("" if args.size == "full" else f"-{args.size}") + ("-partial" if args.only else "")
    path = out / f"{doc['machine']['slug']}-{started.date().isoformat()}{suffix}.json"
    if path.exists():  # a second run of the day never replaces the first: name it by its start time
        path = out / f"{doc['machine']['slug']}-{started.date().isoformat()}-{started:%H%M%S}{suffix}.json"
    try:  # repository-relative when inside it, so the table does not quote a local path
        doc["json_path"] = str(path.resolve().relative_to(DEFAULT_OUT.parent.parent))
    except ValueError:
        doc["json_path"] = str(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    md = markdown(doc)
    (out / ("latest.md" if not suffix else f"latest{suffix}.md")).write_text(md)
    print(md)
    log(f"[bench] wrote {path}")
    return 0 if all(b["status"] in ("ok", "skipped") for b in doc["benchmarks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
