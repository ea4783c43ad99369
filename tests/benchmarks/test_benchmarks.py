"""The benchmark harness (``python -m benchmarks.run``) at ``--size tiny``: it runs every benchmark,
writes a well-formed JSON result and markdown table, and never reports a speed ratio unless the
equal-work checks passed. No assertion depends on wall-clock time.

The harness runs once per module (a subprocess, ~1-2 min on an idle 2-core machine; longer under
load). Without torch (CI installs only the test extra) the PyTorch implementations are recorded as
skipped and the torch-specific test is skipped; everything else is still checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["matmul", "eval", "train", "conv_train", "sphere_pgd", "image_pgd", "lbfgs", "error_rate", "memory",
         "scaling", "nearest_bracket", "paper_estimates"]


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "benchmarks.run", "--size", "tiny", "--out", str(out),
                           "--quiet", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = _run(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.glob("*-tiny.json"))
    assert len(files) == 1, files
    return {"doc": json.loads(files[0].read_text()), "stdout": proc.stdout, "out": out}


def _benchmarks(doc):
    return {b["name"]: b for b in doc["benchmarks"]}


def test_top_level_record(tiny):
    doc = tiny["doc"]
    assert doc["schema_version"] == 1 and doc["size"] == "tiny"
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["cpu_model"]
    assert doc["versions"]["jax"] and doc["versions"]["jax_devices"]
    assert doc["threads"]["jax_cpu_threads"] >= 1
    for key in ("loadavg_start", "loadavg_end"):
        assert len(doc[key]) == 3 and all(x >= 0 for x in doc[key])
    assert isinstance(doc["load"]["provisional"], bool) and doc["load"]["text"]
    assert list(_benchmarks(doc)) == NAMES


def test_every_benchmark_ran_and_recorded_its_load(tiny):
    for b in tiny["doc"]["benchmarks"]:
        assert b["status"] == "ok", (b["name"], b.get("reason"), b.get("traceback"))
        assert len(b["loadavg_before"]) == 3 and len(b["loadavg_after"]) == 3
        assert b["others_cpu_share"] is None or 0.0 <= b["others_cpu_share"] <= 1.0
        assert b["wall_s"] > 0 and b["title"] and b["goal"]


def test_others_cpu_share_subtracts_our_own_cpu_time():
    """Our own CPU time must not count as 'other processes' (the load average would count it)."""
    from benchmarks import _harness as H

    # 3 s of machine CPU in 1 s of wall on 2 CPUs, 1 s of it ours: others used 2 of 2 CPU-seconds.
    assert H.others_cpu_share((10.0, 1.0, 0.0), (13.0, 2.0, 1.0), 2) == 1.0
    # 1.5 s busy, 1 s ours: others 0.5 of 2 CPU-seconds.
    assert H.others_cpu_share((10.0, 1.0, 0.0), (11.5, 2.0, 1.0), 2) == 0.25
    assert H.others_cpu_share((10.0, 1.0, 0.0), (10.5, 2.0, 1.0), 2) == 0.0    # clipped at 0
    assert H.others_cpu_share(None, (1.0, 1.0, 1.0), 2) is None
    a = H.cpu_sample()
    if a is not None:                                    # the real counters: a share in [0, 1]
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
        assert 0.0 <= H.others_cpu_share(a, H.cpu_sample(), H.cpu_threads()) <= 1.0


def test_implementation_records(tiny):
    """Every timing has its repeats, min <= median, and JAX work compiled once (no recompiles)."""
    seen = 0
    for b in tiny["doc"]["benchmarks"]:
        for name, r in b["implementations"].items():
            seen += 1
            assert r["repeats"] == len(r["times_s"]) >= 1, name
            assert 0 < r["min_s"] <= r["median_s"], name
            assert r["rate_best"] >= r["rate_median"] > 0, name
            assert r["units_per_call"] > 0 and r["unit"], name
            if r["flops_per_call"] is not None:
                assert math.isclose(r["gflops_median"], r["flops_per_call"] / r["median_s"] / 1e9, rel_tol=1e-9)
            if r["framework"] == "jax" and r["first_call_s"] is not None:
                assert r["compile_s"] is not None and r["compile_s"] >= 0, name
                assert r["steady_backend_compiles"] == 0, f"{name} recompiled in the timed rounds"
    assert seen >= 20


def test_equal_work_checks_pass(tiny):
    for b in tiny["doc"]["benchmarks"]:
        eq = b["equal_work"]
        failed = [c for c in eq["checks"] if not c["passed"]]
        assert eq["passed"] and not failed, (b["name"], failed)
        if b["name"] not in ("paper_estimates",):
            assert eq["checks"], f"{b['name']} has no equal-work checks"


def test_ratios_only_with_equal_work(tiny):
    """A speed ratio exists exactly when both implementations ran and their checks passed."""
    n = 0
    for b in tiny["doc"]["benchmarks"]:
        for c in b.get("comparisons", []):
            ran = c["fast"] in b["implementations"] and c["slow"] in b["implementations"]
            if c["speedup_median"] is not None:
                n += 1
                assert ran and c["speedup_median"] > 0 and c["speedup_best"] > 0
                r = b["implementations"]
                expected = r[c["fast"]]["rate_median"] / r[c["slow"]]["rate_median"]
                assert math.isclose(c["speedup_median"], expected, rel_tol=1e-9)
            else:
                assert not ran or "equal-work" in c.get("reason", ""), c
    assert n >= 3


def test_outcomes_are_the_same_work(tiny):
    """The attack outcomes the checks compared are really there and agree."""
    bs = _benchmarks(tiny["doc"])
    sr = bs["sphere_pgd"]["extra"]["success_rate"]
    assert len(set(sr.values())) == 1, sr           # deterministic start: identical trajectories
    ex = bs["lbfgs"]["extra"]
    key = next(k for k in ex if k.endswith("_B8"))
    assert 0 <= ex[key]["success_rate"]["jax"] <= 1
    mem = bs["memory"]
    assert any(g["met"] is True for g in mem["goals"])      # the flatness goal was evaluated


def test_markdown_table(tiny):
    md = (tiny["out"] / "latest-tiny.md").read_text()
    assert md.strip() == tiny["stdout"].strip()
    assert "| Benchmark | Implementation |" in md and "Ratios and goals" in md
    for b in tiny["doc"]["benchmarks"]:
        if b["implementations"]:
            assert b["title"] in md


def test_torch_implementations(tiny):
    torch = pytest.importorskip("torch", reason="the bench extra is missing: pip install -e '.[bench]'")
    doc = tiny["doc"]
    assert doc["torch_status"] == "ok"
    assert doc["threads"]["torch_num_threads"] == doc["threads"]["jax_cpu_threads"]
    bs = _benchmarks(doc)
    assert "torch-eager" in bs["eval"]["implementations"]
    assert "relu/torch-eager" in bs["train"]["implementations"]
    assert "torch-loop" in bs["sphere_pgd"]["implementations"]
    assert {"linf/torch-eager", "l2/torch-eager"} <= set(bs["image_pgd"]["implementations"])
    for c in bs["eval"]["equal_work"]["checks"] + bs["train"]["equal_work"]["checks"]:
        if "JAX vs PyTorch" in c["what"]:
            assert c["passed"], c
    del torch


def test_without_torch(tmp_path):
    proc = _run(tmp_path, "--only", "matmul,error_rate", "--no-torch")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a partial run is named as such: it never replaces the day's full results or latest.md
    assert [p.name for p in tmp_path.glob("*.json")] == [p.name for p in tmp_path.glob("*-tiny-partial.json")]
    assert (tmp_path / "latest-tiny-partial.md").exists()
    doc = json.loads(next(tmp_path.glob("*-tiny-partial.json")).read_text())
    assert doc["torch_status"].startswith("disabled")
    assert "torch_num_threads" not in doc["threads"]
    assert [b["name"] for b in doc["benchmarks"]] == ["matmul", "error_rate"]
    assert all(r["framework"] != "torch" for b in doc["benchmarks"] for r in b["implementations"].values())
    # a second run of the day keeps the first file and is named by its start time
    first = next(tmp_path.glob("*-tiny-partial.json"))
    proc = _run(tmp_path, "--only", "error_rate", "--no-torch")
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(files) == 2 and first.name in files and json.loads(first.read_text()) == doc
    second = json.loads((tmp_path / next(f for f in files if f != first.name)).read_text())
    assert [b["name"] for b in second["benchmarks"]] == ["error_rate"]


def test_equal_work_helpers_can_fail():
    """The checks that gate every ratio reject work that differs (unit test, no harness run)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import _harness as H

    eq = H.EqualWork()
    eq.scope = "a"
    assert eq.rate_within_noise("same", {"x": np.r_[[True] * 50, [False] * 50],
                                         "y": np.r_[[True] * 52, [False] * 48]})
    eq.scope = "b"
    assert not eq.rate_within_noise("different", {"x": np.ones(200, bool), "y": np.zeros(200, bool)})
    assert not eq.mean_within_noise("far", {"x": np.full(50, 1.0), "y": np.full(50, 2.0)})
    assert not eq.same("steps", {"x": 10, "y": 11})
    recs = {k: {"rate_median": r, "rate_best": r} for k, r in (("f", 2.0), ("s", 1.0))}
    assert H.compare(recs, eq, "f", "s", scope="a")["speedup_median"] == 2.0
    assert H.compare(recs, eq, "f", "s", scope="b")["speedup_median"] is None
    assert H.compare(recs, eq, "f", "s")["speedup_median"] is None
