"""The CLI: one clear line and a non-zero exit for every bad input; list / run / show work."""

import json
import os
import subprocess
import sys

import pytest

from spheres.cli import main

TINY = ["--set", "d=5", "--set", "hidden=6", "--set", "steps=100", "--set", "chunk_steps=50",
        "--set", "ckpt_every=50", "--set", "eval_samples=1000", "--set", "attack_samples=0",
        "--set", "track_every=50", "--set", "track_eval_every=0", "--no-progress"]


def _cli(*args, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-m", "spheres", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def _one_error_line(out, fragment):
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert lines[-1].startswith("spheres: error:") and fragment in lines[-1], out.stderr


@pytest.mark.parametrize("args,fragment", [
    (["run", "sphere-quadratc"], "did you mean 'sphere-quadratic'"),
    (["run", "sphere-quadratic", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "sphere-quadratic", "--set", "dd=5"], "unknown config key 'dd'"),
    (["run", "sphere-quadratic", "--set", "d=-3"], "d must be >= 2"),
    (["run", "sphere-quadratic", "--set", "R=0.9"], "R must be > 1"),
    (["run", "sphere-quadratic", "--set", "d=abc"], "expected a value of type int"),
    (["run", "sphere-quadratic", "--set", "steps=1001"], "multiple of chunk_steps"),
    (["run", "sphere-quadratic", "--set", "optimizer=lbfgs"], "must be one of adam, sgd, momentum"),
    (["run", "sphere-quadratic", "--out", "/proc/version/run"], "run directory"),
    (["show", "/nonexistent/run"], "not a run directory"),
    (["run", "sphere-relu", "--data-dir", "/tmp"], "--data-dir applies to the szegedy-* and goodfellow-*"),
    (["run", "goodfellow-logistic", "--data-dir", "/nonexistent/idx"], "/nonexistent/idx"),
])
def test_bad_inputs_give_one_line_and_exit_2(args, fragment, capsys):
    # in-process: fast, and the same code path as the console script
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("spheres: error:") and fragment in err[-1], err


def test_missing_image_data_fails_before_the_run_directory_exists(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "goodfellow-logistic", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere is not a directory" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()      # nothing left behind: the same command with the right --data-dir works


def test_batch_not_divisible_by_devices_via_console():
    _one_error_line(_cli("run", "sphere-quadratic", "--set", "batch=50", devices=4),
                    "not divisible by the 4 visible devices")


def test_run_show_resume_and_conflict(tmp_path):
    out = tmp_path / "run"
    r = _cli("run", "sphere-quadratic", "--out", str(out), *TINY)
    assert r.returncode == 0, r.stderr
    assert "error rate, inner sphere" in r.stdout and "wall time" in r.stdout
    for f in ("config.json", "manifest.json", "metrics.jsonl", "summary.json"):
        assert (out / f).exists()
    assert (out / "ckpt").is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["environment"]["jax"] and manifest["seed"] == 0
    # same command again: a finished run prints its table and leaves its summary as it is
    before = (out / "summary.json").read_bytes()
    r2 = _cli("run", "sphere-quadratic", "--out", str(out), *TINY)
    assert r2.returncode == 0 and "error rate, inner sphere" in r2.stdout
    assert (out / "summary.json").read_bytes() == before
    # --reevaluate: resumes (nothing left to train) and recomputes the summary
    r2 = _cli("run", "sphere-quadratic", "--out", str(out), *TINY, "--reevaluate")
    assert r2.returncode == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["resumed_from_step"] == 100
    first = json.loads((out / "train_timing.json").read_text())
    # training time is the first start's (summed over starts), not the resumed start's ~0 s
    assert s["steps_timed"] == 100 and s["train_seconds"] >= first["train_seconds"] > 0
    # a different config into the same directory is refused, then allowed with --force
    _one_error_line(_cli("run", "sphere-quadratic", "--out", str(out), *TINY, "--seed", "3"),
                    "already holds a different run")
    assert _cli("run", "sphere-quadratic", "--out", str(out), *TINY, "--seed", "3", "--force").returncode == 0
    shown = _cli("show", str(out))
    assert shown.returncode == 0 and "error rate, outer sphere" in shown.stdout


def test_list_names_experiments_and_presets():
    r = _cli("list")
    assert r.returncode == 0
    assert "sphere-relu" in r.stdout and "sphere-quadratic" in r.stdout and "--preset paper" in r.stdout


def test_run_dir_accepts_config_from_older_version_with_new_fields_at_default(tmp_path):
    """A run started before a config field existed resumes when the new field is at its default,
    and is refused when it is not."""
    import dataclasses

    from spheres.config import Config
    from spheres.results import RunDir, RunDirConflict

    @dataclasses.dataclass(frozen=True)
    class Old(Config):
        a: int = 1

    @dataclasses.dataclass(frozen=True)
    class New(Config):
        a: int = 1
        b: float = 0.5

    RunDir.open(tmp_path, "exp", Old())
    RunDir.open(tmp_path, "exp", New())                      # b at its default: same run
    assert json.loads((tmp_path / "config.json").read_text())["config"] == {"a": 1, "b": 0.5}
    with pytest.raises(RunDirConflict, match="b: 0.5 -> 0.7"):
        RunDir.open(tmp_path, "exp", New(b=0.7))


def test_compile_cache_location(monkeypatch, tmp_path):
    """``spheres run``'s compilation cache: $SPHERES_COMPILE_CACHE, `off`, the XDG default, and
    nothing of ours when the caller already set JAX_COMPILATION_CACHE_DIR."""
    from spheres.cli import compile_cache_dir

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert compile_cache_dir() is None
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("SPHERES_COMPILE_CACHE", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("SPHERES_COMPILE_CACHE", "off")
    assert compile_cache_dir() is None
    monkeypatch.delenv("SPHERES_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache_dir() == tmp_path / "xdg" / "spheres" / "jax-compile"


def test_run_help_documents_every_option_and_presets(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--preset", "--out", "--seed", "--set", "--data-dir", "--force", "--no-progress"):
        assert opt in out
    assert "spheres describe" in out
    assert "sphere-quadratic" in out and "quick | medium | paper" in out


def test_describe_lists_config_keys_with_types_and_preset_values(capsys):
    assert main(["describe", "sphere-quadratic"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ") and ln.split()}
    assert "key" in lines and "quick" in lines["key"] and "paper" in lines["key"]
    assert "int" in lines["d"] and " 50 " in lines["d"] + " " and "500" in lines["d"]
    assert "float" in lines["lr"]
    assert main(["describe", "no-such-experiment"]) == 2
