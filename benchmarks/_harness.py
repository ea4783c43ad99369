"""Timing, equal-work checks and the result record every benchmark shares.

A benchmark builds a list of `Impl` (one per implementation: this library, a PyTorch baseline,
SciPy, ...), each a no-argument callable doing ONE call's worth of work and returning its output,
and hands them to `measure`. `measure` calls every implementation once (the first call: tracing,
compilation, allocation), then runs ``repeats`` ROUNDS in which every implementation is timed once,
in turn. Interleaving the rounds matters on a shared machine: when the load changes, it changes for
all implementations alike, so their ratio stays meaningful even when the absolute figures move.

JAX outputs are blocked on (``block_until_ready`` on every leaf) inside the timed region. Compile
time is what JAX itself reports through `jax.monitoring` (trace + lowering + backend compile) during
the first call; the count of backend compilations during the steady rounds is recorded as well and
must be zero (a nonzero count means a recompile per call, a bug).

Equal work comes before speed: `EqualWork` collects checks (same model, same steps, same batch,
same function values, attack outcomes within statistical noise), and `compare` refuses to report a
speed ratio when any check failed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

# --------------------------------------------------------------------------------------------------
# Compile accounting through jax.monitoring
# --------------------------------------------------------------------------------------------------

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


class _CompileCounter:
    """Sums JAX's own compile-duration events (one global listener, registered once)."""

    def __init__(self):
        self.seconds = 0.0
        self.backend_compiles = 0
        self._lock = threading.Lock()
        self._registered = False

    def register(self):
        if self._registered:
            return
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(self._on_event)
        self._registered = True

    def _on_event(self, event: str, duration: float, **_):
        if event in _COMPILE_EVENTS:
            with self._lock:
                self.seconds += duration
                if event.endswith("backend_compile_duration"):
                    self.backend_compiles += 1

    def snapshot(self) -> tuple[float, int]:
        with self._lock:
            return self.seconds, self.backend_compiles


COMPILES = _CompileCounter()


def block(out: Any) -> Any:
    """Wait for every JAX array in ``out`` (any pytree); other leaves pass through."""
    import jax

    for leaf in jax.tree_util.tree_leaves(out):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
    return out


# --------------------------------------------------------------------------------------------------
# Implementations and their timings
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Impl:
    """One implementation of a benchmark's work.

    ``fn()`` does one call's work and returns its output (blocked on by the harness).
    ``units_per_call`` counts the work in ``unit`` (examples, steps, gradients ...);
    ``flops_per_call`` (optional) the floating-point operations of the dense layers.
    ``repeats`` overrides the benchmark's repeat count (slow baselines); ``warmup=False`` skips the
    untimed first call for implementations with nothing to compile (then ``first_call_s`` is None).
    ``work`` describes what one call does (model, steps, batch, ...): the equal-work checks compare it.
    """

    name: str
    framework: str
    fn: Callable[[], Any]
    units_per_call: float
    unit: str
    flops_per_call: float | None = None
    repeats: int | None = None
    warmup: bool = True
    work: dict = dataclasses.field(default_factory=dict)
    note: str = ""
    may_fail: bool = False   # a failing first call is recorded as skipped, not raised (torch.compile)


def measure(impls: Sequence[Impl], repeats: int,
            skipped: list | None = None) -> tuple[dict[str, dict], dict[str, Any]]:
    """Time every implementation: one first call each, then interleaved rounds.

    Returns ``(records, outputs)``: per implementation its timing record, and the output of its
    last call (for the equal-work checks). An implementation with ``may_fail`` whose first call
    raises is dropped and appended to ``skipped`` as ``{"name", "reason"}``.
    """
    COMPILES.register()
    impls = list(impls)
    records: dict[str, dict] = {}
    outputs: dict[str, Any] = {}
    for impl in impls:
        rec = {"framework": impl.framework, "unit": impl.unit,
               "units_per_call": float(impl.units_per_call),
               "flops_per_call": None if impl.flops_per_call is None else float(impl.flops_per_call),
               "work": impl.work, "note": impl.note, "times_s": [], "first_call_s": None,
               "compile_s": None, "steady_backend_compiles": 0}
        if impl.warmup:
            c0, _ = COMPILES.snapshot()
            t0 = time.perf_counter()
            try:
                outputs[impl.name] = block(impl.fn())
            except Exception as e:
                if not impl.may_fail:
                    raise
                first = str(e).strip().splitlines()[0][:400] if str(e).strip() else ""
                if skipped is not None:
                    skipped.append({"name": impl.name, "reason": f"failed: {type(e).__name__}: {first}"})
                continue
            rec["first_call_s"] = time.perf_counter() - t0
            c1, _ = COMPILES.snapshot()
            rec["compile_s"] = c1 - c0 if impl.framework == "jax" else None
        records[impl.name] = rec
    impls = [impl for impl in impls if impl.name in records]
    rounds = max((impl.repeats or repeats) for impl in impls) if impls else 0
    for r in range(rounds):
        for impl in impls:
            if r >= (impl.repeats or repeats):
                continue
            _, n0 = COMPILES.snapshot()
            t0 = time.perf_counter()
            out = block(impl.fn())
            dt = time.perf_counter() - t0
            _, n1 = COMPILES.snapshot()
            outputs[impl.name] = out
            rec = records[impl.name]
            rec["times_s"].append(dt)
            if impl.framework == "jax":
                rec["steady_backend_compiles"] += n1 - n0
    for impl in impls:
        _summarise(records[impl.name])
        if impl.framework == "torch" and records[impl.name]["first_call_s"] is not None:
            # torch has no compile events; for torch.compile the first call is the compile.
            records[impl.name]["compile_s"] = max(
                0.0, records[impl.name]["first_call_s"] - records[impl.name]["median_s"])
    return records, outputs


def _summarise(rec: dict) -> None:
    ts = rec["times_s"]
    rec["repeats"] = len(ts)
    rec["min_s"] = min(ts)
    rec["median_s"] = statistics.median(ts)
    u = rec["units_per_call"]
    rec["rate_median"] = u / rec["median_s"]
    rec["rate_best"] = u / rec["min_s"]
    f = rec["flops_per_call"]
    rec["gflops_median"] = None if f is None else f / rec["median_s"] / 1e9
    rec["gflops_best"] = None if f is None else f / rec["min_s"] / 1e9


# --------------------------------------------------------------------------------------------------
# Equal work
# --------------------------------------------------------------------------------------------------


def _jsonable(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class EqualWork:
    """Collects the checks that implementations did the same work.

    Set ``scope`` (e.g. ``"linf"``) before adding the checks of one comparison group; `compare`
    with that scope then needs only the global checks and the group's own to pass.
    """

    def __init__(self):
        self.checks: list[dict] = []
        self.scope: str | None = None   # checks added now apply to this comparison group only

    def _add(self, what, passed, values, tolerance=None, detail=""):
        self.checks.append({"what": what, "passed": bool(passed), "scope": self.scope,
                            "values": {k: _jsonable(v) for k, v in values.items()},
                            "tolerance": tolerance, "detail": detail})
        return passed

    def passed_for(self, scope: str | None) -> bool:
        """Checks that apply to ``scope``: the global ones (scope None) and that scope's own."""
        return all(c["passed"] for c in self.checks if c["scope"] is None or c["scope"] == scope)

    def same(self, what: str, values: dict) -> bool:
        """All values identical (model size, steps, batch, settings)."""
        vals = list(values.values())
        return self._add(what, all(v == vals[0] for v in vals), values, "identical")

    def close(self, what: str, values: dict, *, rtol: float, atol: float = 0.0) -> bool:
        """Scalars (or the max abs difference of arrays, passed as ``values``) agree."""
        vals = [float(v) for v in values.values()]
        ref = vals[0]
        ok = all(math.isfinite(v) and abs(v - ref) <= atol + rtol * abs(ref) for v in vals)
        return self._add(what, ok, values, f"|a-b| <= {atol:g} + {rtol:g}*|a|")

    def arrays_close(self, what: str, a, b, *, rtol: float, atol: float, names=("a", "b")) -> bool:
        """Two arrays of the same quantity (e.g. logits of the same inputs) agree elementwise."""
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        ok = a.shape == b.shape and err <= atol + rtol * scale
        return self._add(what, ok, {"max_abs_diff": err, "max_abs_value": scale,
                                    f"shape_{names[0]}": list(a.shape), f"shape_{names[1]}": list(b.shape)},
                         f"max|a-b| <= {atol:g} + {rtol:g}*max|a|")

    def rate_within_noise(self, what: str, outcomes: dict, *, z: float = 3.0) -> bool:
        """Success rates ``{name: bool array}`` agree within ``z`` binomial standard errors."""
        items = {k: np.asarray(v, bool) for k, v in outcomes.items()}
        names = list(items)
        ref = items[names[0]]
        ok = True
        tol = 0.0
        for k in names[1:]:
            o = items[k]
            p = (ref.sum() + o.sum()) / (ref.size + o.size)
            se = math.sqrt(max(p * (1 - p), 0.25 / min(ref.size, o.size)) * (1 / ref.size + 1 / o.size))
            tol = z * se + 1.0 / min(ref.size, o.size)
            ok &= abs(ref.mean() - o.mean()) <= tol
        values = {k: float(v.mean()) for k, v in items.items()}
        values.update({f"n_{k}": int(v.size) for k, v in items.items()})
        return self._add(what, ok, values, f"|Δrate| <= {z:g}·SE + 1/n = {tol:.3g}")

    def mean_within_noise(self, what: str, samples: dict, *, z: float = 3.0, rtol: float = 0.0) -> bool:
        """Means of ``{name: samples}`` agree within ``z`` standard errors plus ``rtol``·mean."""
        items = {k: np.asarray(v, np.float64).ravel() for k, v in samples.items()}
        names = list(items)
        ref = items[names[0]]
        ok = ref.size > 0
        tol = float("nan")
        for k in names[1:]:
            o = items[k]
            if not (ref.size and o.size):
                ok = ref.size == o.size
                continue
            var = (ref.var(ddof=1) / ref.size if ref.size > 1 else 0.0) + \
                  (o.var(ddof=1) / o.size if o.size > 1 else 0.0)
            tol = z * math.sqrt(var) + rtol * abs(ref.mean())
            ok &= abs(ref.mean() - o.mean()) <= tol
        values = {k: float(v.mean()) if v.size else None for k, v in items.items()}
        values.update({f"n_{k}": int(v.size) for k, v in items.items()})
        return self._add(what, ok, values, f"|Δmean| <= {z:g}·SE + {rtol:g}·mean = {tol:.3g}")

    def flag(self, what: str, passed: bool, values: dict | None = None, detail: str = "") -> bool:
        return self._add(what, passed, values or {}, None, detail)

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "checks": self.checks}


def compare(records: dict, equal: EqualWork, fast: str, slow: str, *, goal: float | None = None,
            what: str | None = None, scope: str | None = None) -> dict:
    """Speed ratio ``rate(fast) / rate(slow)`` (median and best), only if the work was equal
    (the global checks and, with ``scope``, that group's checks; without it, every check)."""
    out = {"what": what or f"{fast} vs {slow}", "fast": fast, "slow": slow,
           "goal": None if goal is None else f">= {goal:g}x", "speedup_median": None,
           "speedup_best": None, "met": None}
    if fast not in records or slow not in records:
        out["reason"] = "an implementation did not run"
        return out
    if not (equal.passed_for(scope) if scope is not None else equal.passed):
        out["reason"] = "equal-work check failed: speed not compared"
        return out
    a, b = records[fast], records[slow]
    out["speedup_median"] = a["rate_median"] / b["rate_median"]
    out["speedup_best"] = a["rate_best"] / b["rate_best"]
    if goal is not None:
        out["met"] = bool(out["speedup_median"] >= goal)
    return out


def flop_fraction(records: dict, name: str, reference: str, *, goal: float | None = None) -> dict:
    """``GFLOP/s(name) / GFLOP/s(reference)`` with the reference measured in the same rounds."""
    out = {"what": f"{name} / {reference} FLOP rate", "impl": name, "reference": reference,
           "goal": None if goal is None else f">= {goal:.0%}", "fraction_median": None,
           "fraction_best": None, "met": None}
    if name not in records or reference not in records or records[name]["gflops_median"] is None:
        out["reason"] = "missing"
        return out
    a, r = records[name], records[reference]
    out["fraction_median"] = a["gflops_median"] / r["gflops_median"]
    out["fraction_best"] = a["gflops_best"] / r["gflops_best"]
    if goal is not None:
        out["met"] = bool(out["fraction_median"] >= goal)
    return out


# --------------------------------------------------------------------------------------------------
# Shared context: threads, torch, the matmul probe
# --------------------------------------------------------------------------------------------------


def cpu_threads() -> int:
    """Threads XLA's CPU backend uses by default: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclasses.dataclass
class Context:
    """What every benchmark gets: the size, the thread count, torch (or why not)."""

    size: str
    threads: int
    torch: Any = None               # the torch module, or None
    torch_reason: str = ""          # why torch is None
    torchattacks: Any = None
    torchattacks_reason: str = ""
    compile_torch: bool = True      # try torch.compile
    omp_wait_policy: str = ""       # what PyTorch's OpenMP threads do when idle, and why

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"


def matmul_probe(ctx: Context, n: int) -> list[Impl]:
    """The machine's FLOP-rate reference, timed inside each benchmark's rounds: a jitted ``n×n``
    float32 matmul (XLA) and, when torch is present, ``torch.mm`` on the same threads."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.key(123))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    impls = [Impl(f"xla-matmul-{n}", "jax", lambda: mm(a, b), 1, "matmul", 2.0 * n**3,
                  work={"shape": [n, n, n], "dtype": "float32"})]
    if ctx.torch is not None:
        torch = ctx.torch
        ta, tb = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))

        def tmm():
            with torch.inference_mode():
                return torch.mm(ta, tb)

        impls.append(Impl(f"torch-matmul-{n}", "torch", tmm, 1, "matmul", 2.0 * n**3,
                          work={"shape": [n, n, n], "dtype": "float32"}))
    return impls


def dense_flops(sizes: Sequence[int]) -> int:
    """``Σ in·out`` over consecutive layer sizes: multiply-adds of one example's forward pass."""
    return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))


def cpu_sample() -> tuple[float, float, float] | None:
    """``(machine busy CPU-seconds, this process's CPU-seconds incl. waited children, wall time)``.

    Busy is user + nice + system + irq + softirq + steal from ``/proc/stat`` (steal: a hypervisor
    gave the CPU to another guest). ``None`` where ``/proc/stat`` is unavailable.
    """
    import resource

    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")      # minus idle, iowait
    own = sum(getattr(resource.getrusage(w), k) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for k in ("ru_utime", "ru_stime"))
    return busy, own, time.monotonic()


def others_cpu_share(before, after, cpus: int) -> float | None:
    """Fraction of the machine's CPU time used by OTHER processes between two `cpu_sample` calls.

    The load average cannot tell this: a 2-thread benchmark alone on 2 cores already shows ~2.
    """
    if before is None or after is None or after[2] <= before[2]:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return round(min(max(other / ((after[2] - before[2]) * cpus), 0.0), 1.0), 4)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def skipped(reason: str, **extra) -> dict:
    """The record of a benchmark (or implementation) that did not run, and why."""
    return {"status": "skipped", "reason": reason, **extra}
