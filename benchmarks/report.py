"""The markdown summary of one benchmark run (printed, written to ``latest.md``, quoted in the README)."""

from __future__ import annotations


def fmt(x, digits: int = 3) -> str:
    """Three significant digits with k/M/G suffixes; '-' for None."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    x = float(x)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.{digits}g}{suf}"
    return f"{x:.{digits}g}"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _met(m) -> str:
    return {True: "yes", False: "**no**", None: "-"}[m]


def _load(b) -> str:
    lb, la = b.get("loadavg_before") or [None], b.get("loadavg_after") or [None]
    other = b.get("others_cpu_share")
    return f"{fmt(lb[0], 2)}→{fmt(la[0], 2)}" + (f"; others {other:.0%}" if other is not None else "")


def markdown(doc: dict) -> str:
    m, v, t = doc["machine"], doc["versions"], doc["threads"]
    lines = [f"### Benchmarks: {m['cpu_model']}, {m['cpu_count']} CPUs, {doc['started'][:10]} "
             f"(size `{doc['size']}`)", ""]
    load = doc.get("load", {})
    if load.get("provisional"):
        lines += [f"> **PROVISIONAL.** {load.get('text', '')}.", ""]
    elif load:
        lines += [f"> {load.get('text', '')}.", ""]
    vers = ", ".join(f"{k} {v[k]}" for k in ("jax", "jaxlib", "flax", "torch", "torchattacks", "jaxopt",
                                             "scipy") if v.get(k))
    thr = f"JAX/XLA {t['jax_cpu_threads']} threads"
    if "torch_num_threads" in t:
        thr += (f", torch {t['torch_num_threads']} threads (interop {t['torch_interop_threads']}; "
                f"{t.get('torch_omp_wait_policy', '')})")
    blas = t.get("OPENBLAS_NUM_THREADS (NumPy/SciPy baselines)")
    if blas:
        thr += f", NumPy/SciPy OpenBLAS {blas}"
    lines += [f"Versions: {vers}. Threads: {thr}. Backend: {v.get('jax_backend')}. "
              f"Raw figures: `{doc.get('json_path', '')}`.", ""]

    lines += ["| Benchmark | Implementation | Rate (median) | Rate (best) | Unit / s | Compile / first call (s) "
              "| GFLOP/s (median) | Load 1 min before→after; other processes |",
              "|---|---|---|---|---|---|---|---|"]
    problems = []
    for b in doc["benchmarks"]:
        if b["status"] != "ok":
            lines.append(f"| {b['title']} | *{b['status']}* | | | | | | {_load(b)} |")
            problems.append(f"- **{b['name']}** {b['status']}: {b.get('reason', '')}")
            continue
        first = True
        for name, r in b.get("implementations", {}).items():
            if r.get("status") == "skipped":
                rate = rate_b = "skipped"
                comp = gfl = unit = ""
                problems.append(f"- {b['name']} / {name}: skipped: {r.get('reason', '')}")
            else:
                rate, rate_b = fmt(r["rate_median"]), fmt(r["rate_best"])
                unit = r["unit"]
                c, f = r.get("compile_s"), r.get("first_call_s")
                comp = f"{fmt(c)} / {fmt(f)}" if f is not None else "-"
                gfl = fmt(r.get("gflops_median"))
            lines.append(f"| {b['title'] if first else ''} | {name} | {rate} | {rate_b} | {unit} | {comp} "
                         f"| {gfl} | {_load(b) if first else ''} |")
            first = False
        for s in b.get("skipped_impls", []):
            problems.append(f"- {b['name']} / {s['name']}: skipped: {s['reason']}")

    lines += ["", "Ratios and goals (a speed ratio is reported only when the equal-work checks passed):", "",
              "| Benchmark | Comparison | Median | Best | Goal | Met | Equal work |", "|---|---|---|---|---|---|---|"]
    for b in doc["benchmarks"]:
        if b["status"] != "ok":
            continue
        eq = b.get("equal_work", {})
        eqs = "-" if not eq.get("checks") else ("passed" if eq.get("passed") else "**FAILED**")
        rows = []
        for c in b.get("comparisons", []):
            rows.append((c["what"], _ratio(c.get("speedup_median")), _ratio(c.get("speedup_best")),
                         c.get("goal") or "-", _met(c.get("met")) if c.get("speedup_median") is not None
                         else c.get("reason", "-")))
        for f in b.get("flop_fractions", []):
            rows.append((f["what"], _pct(f.get("fraction_median")), _pct(f.get("fraction_best")),
                         f.get("goal") or "-", _met(f.get("met"))))
        for g in b.get("goals", []):
            rows.append((g["what"], g.get("measured", "-"), g.get("best", "-"), g.get("goal", "-"),
                         _met(g.get("met"))))
        for i, row in enumerate(rows):
            lines.append(f"| {b['title'] if i == 0 else ''} | " + " | ".join(row) + f" | {eqs if i == 0 else ''} |")
        if not eq.get("passed", True):
            for c in eq["checks"]:
                if not c["passed"]:
                    problems.append(f"- {b['name']}: equal-work check failed: {c['what']} {c['values']} "
                                    f"(tolerance {c['tolerance']})")
    for b in doc["benchmarks"]:
        if b.get("status") == "ok" and b.get("estimates"):
            g = b["config"]["gpu"]
            lines += ["", f"Paper presets on one GPU, estimated ({g['name']}: {g['fp32_peak_tflops']} TFLOP/s fp32 "
                      f"at {g['sustained_fraction']:.0%} sustained, {g['train_step_latency_s'] * 1e6:.0f} µs per "
                      f"training step, {g['attack_step_latency_s'] * 1e6:.0f} µs per attack step; not measured):", "",
                      "| Command | Models | TFLOP | Estimated GPU time | Stated cost (config) |", "|---|---|---|---|---|"]
            for r in b["estimates"]:
                t = f"~{r['gpu_hours'] * 60:.0f} min" if r["gpu_hours"] < 2 else f"~{r['gpu_hours']:.1f} h"
                lines.append(f"| `{r['command']}` | {r['models']} | {r['tflop']:.0f} | {t} | {r['stated_cost'] or '-'} |")
    for b in doc["benchmarks"]:
        for n in b.get("notes", []):
            problems.append(f"- {b['name']}: {n}")
    if problems:
        lines += ["", "Notes, skips and failures:", "", *problems]
    return "\n".join(lines) + "\n"


PAGE_INTRO = """# Benchmarks

Speed of the library against PyTorch, SciPy and the machine's own matrix-multiply rate, measured
side by side in one process by `make bench` (`benchmarks/run.py`); every run writes its raw figures
to `benchmarks/results/<machine>-<date>.json`. This page is generated from those files by
`make docs` (`python -m benchmarks.report --page docs/benchmarks.md`): the newest full runs first.
A ratio is reported only when the equal-work checks of its benchmark passed. Speed is never
asserted in the test suite.
"""


def full_runs(results_dir) -> list:
    """The full-size (not partial, not tiny) benchmark records in ``results_dir``, newest first."""
    import json
    from pathlib import Path

    docs = []
    for p in sorted(Path(results_dir).glob("*.json")):
        if p.stem.endswith("-partial"):
            continue
        doc = json.loads(p.read_text())
        if doc.get("size") == "full":
            doc.setdefault("json_path", f"benchmarks/results/{p.name}")
            docs.append(doc)
    return sorted(docs, key=lambda d: d["started"], reverse=True)


def page(results_dir, keep: int = 2) -> str:
    """``docs/benchmarks.md``: the ``keep`` newest full runs, each as `markdown` renders it."""
    docs = full_runs(results_dir)[:keep]
    if not docs:
        return PAGE_INTRO + "\nNo full benchmark run has been recorded yet.\n"
    return PAGE_INTRO + "\n" + "\n".join(markdown(d) for d in docs)


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description="write the benchmarks page from benchmarks/results/")
    ap.add_argument("--page", type=Path, required=True, help="output Markdown file")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text(page(args.results))
    print(f"wrote {args.page}")
