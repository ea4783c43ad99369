"""Real signals and real concurrency on `spheres run` subprocesses: SIGKILL before the first
checkpoint, SIGINT after it, SIGKILL during evaluation, and a second run on a live directory."""

import json
import signal
import time

import pytest

from conftest import TINY, assert_one_error, run_cli, sets, spawn

# long enough to interrupt at ~50,000 steps/s on an idle core: the first checkpoint at step 500,000
# (~10 s: the first process is killed long before it, after ~1-3 s), then 500,000 more steps, so the
# SIGINT sent just after step 501,000 cannot lose the race with the end of training
LONG = {**TINY, "steps": 1_000_000, "chunk_steps": 1000, "ckpt_every": 500_000, "track_every": 500_000}


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _steps(out):
    return [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]


# A SIGINT that lands while a checkpoint is being finalised is held until the write is whole
# (spheres.interrupts.deferred_interrupts), so the run always ends by exit 130, never by the signal.
def test_kill_before_checkpoint_then_concurrent_then_sigint_after_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    args = ("run", "sphere-quadratic", "--out", str(out), *sets(LONG))
    p = spawn(*args)
    _wait_for(lambda: (out / "metrics.jsonl").exists() and len(_steps(out)) >= 2, p)
    # a second run on the live directory: one line naming the owner, nothing written
    before = (out / "metrics.jsonl").read_bytes()
    code, _, err = run_cli(capsys, *args, "--no-progress")
    assert_one_error(code, err, f"in use by process {p.pid}")
    assert (out / "metrics.jsonl").read_bytes()[: len(before)] == before
    # SIGKILL before the first checkpoint: the rerun takes the stale lock and starts over cleanly
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not list((out / "ckpt").glob("sha256-*.json")) and not (out / "ckpt" / "500000").exists()
    p = spawn(*args)
    _wait_for(lambda: (out / "ckpt" / "500000").is_dir() and _steps(out)[-1] >= 501_000, p)
    # SIGINT after the first checkpoint: exit 130, the lock released, one line of advice
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    assert "Traceback" not in err and "stale lock" in err
    assert not (out / ".lock").exists()
    steps = _steps(out)
    assert steps.count(0) == 1 and steps == sorted(steps)       # no duplicated lines
    # the rerun resumes from the checkpoint and finishes with an unduplicated metrics file
    p = spawn(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["resumed_from_step"] == 500_000
    assert _steps(out) == [0, *range(1000, 1_000_001, 1000)]


def test_kill_during_evaluation_then_finish_with_smaller_eval(tmp_path):
    out = tmp_path / "run"
    big = {**TINY, "eval_samples": 200_000_000, "eval_chunk": 100_000}
    p = spawn("run", "sphere-quadratic", "--out", str(out), *sets(big))
    _wait_for(lambda: (out / "train_timing.json").exists() and
              json.loads((out / "train_timing.json").read_text() or "{}").get("step") == 100, p)
    time.sleep(1.0)
    assert p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists()
    # evaluation-only change: accepted, no retraining, evaluated from the final checkpoint
    p = spawn("run", "sphere-quadratic", "--out", str(out), *sets(TINY))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["resumed_from_step"] == 100 and s["error_rate"]["inner"]["n"] == 1000
    assert _steps(out) == [0, 50, 100]
