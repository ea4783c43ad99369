"""Start real `spheres` processes on this machine (127.0.0.1, a free port, gloo) and never leave one
behind: `Procs` kills (SIGKILL, by pid) whatever is still running when its block ends."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# sphere-quadratic --preset quick, shrunk so that a two-process run takes seconds: batch 52 (the
# preset's 50 does not split over 2 processes x 2 devices), 500 steps in two chunks with a
# checkpoint after each, 20,000 points per sphere, no attacks and no tracked error rate
SMALL = ["--preset", "quick", "--no-progress", "--set", "batch=52", "--set", "steps=500",
         "--set", "chunk_steps=250", "--set", "ckpt_every=250", "--set", "track_every=250",
         "--set", "track_eval_every=0", "--set", "eval_samples=20000", "--set", "attack_samples=0"]
TIMEOUT = 240          # seconds any one launch may take before the test fails (and kills it)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int = 2) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def launch_args(port: int, n: int, i: int, timeout: int = 60) -> list[str]:
    return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(i),
            "--init-timeout", str(timeout)]


class Procs:
    """``with Procs(tmp) as ps: p = ps.start(args, cwd=..., name=...)``; logs in ``tmp/NAME.err``."""

    def __init__(self, logs: Path):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []

    def start(self, args, *, name: str, cwd: Path | None = None, devices: int = 2, extra=None):
        cwd = Path(cwd or self.logs)
        cwd.mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen([sys.executable, "-m", "spheres", *args],
                             cwd=cwd, env={**env(devices), **(extra or {})},
                             stdout=open(self.logs / f"{name}.out", "w"),
                             stderr=open(self.logs / f"{name}.err", "w"), stdin=subprocess.DEVNULL)
        p.name = name
        self.procs.append(p)
        return p

    def start_two(self, args, *, name: str, cwds=(None, None), devices: int = 2):
        port = free_port()
        return [self.start([*args, *launch_args(port, 2, i)], name=f"{name}{i}", cwd=cwds[i],
                           devices=devices) for i in range(2)]

    def wait(self, *procs, timeout: float = TIMEOUT) -> list[int]:
        deadline = time.time() + timeout
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(max(0.1, deadline - time.time())))
            except subprocess.TimeoutExpired:
                self.kill(*procs)
                raise AssertionError(f"{p.name} still running after {timeout} s: "
                                     f"{self.err(p)[-2000:]}") from None
        return codes

    def err(self, p) -> str:
        return (self.logs / f"{p.name}.err").read_text()

    def out(self, p) -> str:
        return (self.logs / f"{p.name}.out").read_text()

    def last_line(self, p) -> str:
        lines = [x for x in self.err(p).splitlines() if x.strip() and not x.startswith("[Gloo]")]
        return lines[-1] if lines else ""

    @staticmethod
    def kill(*procs) -> None:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill(*self.procs)


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if procs and any(p.poll() is not None for p in procs):
            raise AssertionError(f"a process ended while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
