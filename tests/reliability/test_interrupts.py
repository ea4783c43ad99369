"""Real signals and real concurrency on `spheres run` subprocesses: SIGKILL before the first
checkpoint, SIGINT after it, SIGKILL during evaluation, and a second run on a live directory."""

import json
import signal
import time

import pytest

from conftest import TINY, assert_one_error, run_cli, sets, spawn

# long enough to interrupt: the first checkpoint at step 100,000
LONG = {**TINY, "steps": 200_000, "chunk_steps": 1000, "ckpt_every": 100_000, "track_every": 100_000}


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _steps(out):
    return [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]


# Deselected by default (`make test-slow` runs it): the SIGINT races the end of training (on an idle
# machine the 100,000 steps after the checkpoint can finish first), and a SIGINT that lands while
# the checkpoint is being finalised was once seen to end the process by the signal (-2) instead of
# exit 130; both are open in the reliability issue.
@pytest.mark.slow
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
    assert not list((out / "ckpt").glob("sha256-*.json"))
    p = spawn(*args)
    _wait_for(lambda: (out / "ckpt" / "100000").is_dir() and _steps(out)[-1] >= 101_000, p)
    # SIGINT after the first checkpoint: exit 130, the lock released, one line of advice
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err and "stale lock" in err
    assert not (out / ".lock").exists()
    steps = _steps(out)
    assert steps.count(0) == 1 and steps == sorted(steps)       # no duplicated lines
    # the rerun resumes from the checkpoint and finishes with an unduplicated metrics file
    p = spawn(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["resumed_from_step"] == 100_000
    assert _steps(out) == [0, *range(1000, 200_001, 1000)]


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
