"""Helpers of the reliability suite: tiny configs and CLI runs (in-process and as subprocesses)."""

import os
import signal
import subprocess
import sys

import pytest

from spheres.cli import main

# a ~1-second sphere-quadratic run (tests/core/test_cli.py TINY)
TINY = {"d": 5, "hidden": 6, "steps": 100, "chunk_steps": 50, "ckpt_every": 50, "eval_samples": 1000,
        "attack_samples": 0, "track_every": 50, "track_eval_every": 0}


def sets(cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        out += ["--set", f"{k}={v}"]
    return out


@pytest.fixture(autouse=True)
def sigint_raises_keyboard_interrupt():
    """Python's own SIGINT handler for each test, whatever this process inherited: a shell starts a
    background job (``make test &``, ``nohup``) with SIGINT ignored, and these tests send SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_default() -> None:
    """In a spawned child before exec: SIGINT at its default, so Python installs KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")


def spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spheres", *args, "--no-progress"], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``spheres ARGS`` in-process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_error(code: int, err: str, fragment: str = "") -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("spheres: error:") and fragment in lines[-1], err


@pytest.fixture
def tiny_run(tmp_path, capsys):
    """A finished tiny sphere-quadratic run (in-process), its directory returned."""
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", "sphere-quadratic", "--out", str(out), *sets(TINY), "--no-progress")
    assert code == 0, err
    return out
