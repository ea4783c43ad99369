"""Run a `benchmarks._worker` job in a fresh Python process and parse its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_worker(kind: str, cfg: dict, *, env: dict | None = None, timeout: float = 1800) -> dict:
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = subprocess.run([sys.executable, "-m", "benchmarks._worker", kind, json.dumps(cfg)],
                         cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {kind} {cfg} failed (exit {out.returncode}): {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
