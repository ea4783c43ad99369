"""Run directories under damage, in-process: --force, the written-files list, corrupt files, the
lock, checkpoints with checksums, and the finished-run / --reevaluate contract."""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY, assert_one_error, run_cli, sets
from spheres.results import RunDir, RunDirConflict, RunDirLocked, RunFileError


def _run(capsys, out, *extra, cfg=TINY):
    return run_cli(capsys, "run", "sphere-quadratic", "--out", str(out), *sets(cfg), "--no-progress", *extra)


def test_force_deletes_only_what_the_run_wrote(tiny_run, capsys):
    mine = {"config.json.bak": "{}", "package.json": '{"name": "x"}', "photo.png": "png", "weights.npz": "npz",
            "notes.txt": "keep"}
    for name, text in mine.items():
        (tiny_run / name).write_text(text)
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert {"config.json", "manifest.json", "metrics.jsonl", "summary.json", "ckpt"} <= set(manifest["files"])
    code, _, err = _run(capsys, tiny_run, "--seed", "3")
    assert_one_error(code, err, "already holds a different run")
    code, _, err = _run(capsys, tiny_run, "--seed", "3", "--force")
    assert code == 0, err
    for name, text in mine.items():
        assert (tiny_run / name).read_text() == text, name
    assert json.loads((tiny_run / "summary.json").read_text())["seed"] == 3


def test_directory_that_never_held_a_run_is_refused_even_with_force(tmp_path, capsys):
    (tmp_path / "package.json").write_text("{}")
    code, _, err = _run(capsys, tmp_path, "--force")
    assert_one_error(code, err, "holds no run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package.json"]


def test_force_reaches_sub_runs_and_checks_before_deleting(tmp_path):
    parent = RunDir.open(tmp_path, "sweep", {"a": 1})
    parent.save_json("top", {"x": 1})
    child = RunDir.open(tmp_path / "N10", "member", {"b": 1})
    child.save_arrays("alpha", alpha=np.ones(3))
    (tmp_path / "N10" / "user.txt").write_text("keep")
    assert "N10/" in json.loads((tmp_path / "manifest.json").read_text())["files"]
    parent.close()
    # a live process holds the sub-run: refused, and nothing at the top was deleted
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "N10" / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": platform.node()}))
        with pytest.raises(RunDirLocked, match=str(sleeper.pid)):
            RunDir.open(tmp_path, "sweep", {"a": 2}, force=True)
        assert (tmp_path / "top.json").exists() and (tmp_path / "N10" / "alpha.npz").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    RunDir.open(tmp_path, "sweep", {"a": 2}, force=True).close()   # its holder is dead now
    assert not (tmp_path / "top.json").exists()
    assert sorted(p.name for p in (tmp_path / "N10").iterdir()) == ["user.txt"]


def test_live_lock_is_refused_naming_pid_and_host(tiny_run, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tiny_run / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": platform.node(),
                                                    "started": "now"}))
        code, _, err = _run(capsys, tiny_run)
        assert_one_error(code, err, f"in use by process {sleeper.pid} on {platform.node()}")
    finally:
        sleeper.kill()
        sleeper.wait()
    code, _, err = _run(capsys, tiny_run)          # now dead: taken over with a warning
    assert code == 0 and "stale lock" in err
    assert not (tiny_run / ".lock").exists()       # released on exit


def test_lock_released_on_exception(tmp_path, monkeypatch):
    from spheres import experiments

    def boom(*a, **k):
        raise KeyboardInterrupt

    exp = experiments.get("sphere-quadratic")
    monkeypatch.setitem(experiments._REGISTRY, "sphere-quadratic",
                        experiments.Experiment(exp.name, exp.config_cls, boom, exp.description, exp.table,
                                               exp.paper_rows, exp.paper))
    with pytest.raises(KeyboardInterrupt):
        experiments.run_experiment("sphere-quadratic", tmp_path / "r", overrides=TINY, progress=False)
    assert (tmp_path / "r" / "config.json").exists() and not (tmp_path / "r" / ".lock").exists()


def test_corrupt_metrics_line_is_an_error_and_never_rewritten(tiny_run, capsys):
    p = tiny_run / "metrics.jsonl"
    lines = p.read_bytes().split(b"\n")
    lines[2] = lines[2][: len(lines[2]) // 2]
    p.write_bytes(b"\n".join(lines))
    before = p.read_bytes()
    code, _, err = _run(capsys, tiny_run, "--reevaluate")
    assert_one_error(code, err, "metrics.jsonl: line 3 is corrupt")
    assert p.read_bytes() == before
    code, _, err = run_cli(capsys, "show", str(tiny_run))
    assert_one_error(code, err, "metrics.jsonl: line 3")


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    rd = RunDir.open(tmp_path, "x", {"a": 1})
    for s in range(3):
        rd.log_metrics({"step": s})
    p = tmp_path / "metrics.jsonl"
    p.write_bytes(p.read_bytes()[:-4])       # the kill came while writing the last line
    assert rd.read_metrics() == [{"step": 0}, {"step": 1}]
    assert "line 3 is incomplete" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["config.json", "manifest.json", "summary.json", "metrics.jsonl",
                                  "train_timing.json"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "list", "empty"])
def test_every_damaged_run_file_gives_one_line(tiny_run, capsys, name, damage):
    p = tiny_run / name
    data = p.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        i = len(data) // 3
        data = data[:i] + bytes([data[i] ^ 0xFF, data[i + 1] ^ 0x55]) + data[i + 2:]
    elif damage == "list":
        data = b"[]\n"
    else:
        data = b""
    p.write_bytes(data)
    for args in (["show", str(tiny_run)], ["run", "sphere-quadratic", "--out", str(tiny_run), *sets(TINY),
                                            "--no-progress"]):
        code, _, err = run_cli(capsys, *args)
        assert "Traceback" not in err
        if code:
            assert_one_error(code, err)
            if name in ("config.json", "manifest.json", "summary.json"):
                assert name in err and "differs in" not in err, err


def test_summary_missing_keys_in_show_and_report(tiny_run, tmp_path, capsys):
    s = json.loads((tiny_run / "summary.json").read_text())
    del s["error_rate"]
    (tiny_run / "summary.json").write_text(json.dumps(s))
    code, _, err = run_cli(capsys, "show", str(tiny_run))
    assert_one_error(code, err, "summary.json")
    code, out, err = run_cli(capsys, "report", str(tiny_run))
    assert code == 0 and "unreadable" in out and "Traceback" not in err


def test_one_corrupt_run_does_not_abort_a_report(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"experiment": "sphere-quadratic", "config": {')
    code, out, err = run_cli(capsys, "report", str(tiny_run), str(bad))
    assert code == 0, err
    assert "unreadable run" in out and "error rate" in out.lower()


def test_report_out_into_a_run_directory_is_refused(tiny_run, capsys):
    code, _, err = run_cli(capsys, "report", str(tiny_run), "--out", str(tiny_run / "report.md"))
    assert_one_error(code, err, "inside the run directory")
    assert not (tiny_run / "report.md").exists()


def test_finished_run_is_not_recomputed_unless_asked(tiny_run, capsys):
    before = (tiny_run / "summary.json").read_bytes()
    code, out, _ = _run(capsys, tiny_run)
    assert code == 0 and "error rate, inner sphere" in out
    assert (tiny_run / "summary.json").read_bytes() == before
    code, _, _ = _run(capsys, tiny_run, "--reevaluate")
    after = json.loads((tiny_run / "summary.json").read_text())
    assert code == 0 and after["resumed_from_step"] == 100
    assert after["error_rate"] == json.loads(before)["error_rate"]


def _flip_checkpoint(step_dir, how):
    """Damage every data file of one orbax step (two flipped bits in the middle, or a cut)."""
    if how == "checksum":     # the arrays no longer match their recorded checksum
        c = step_dir.parent / f"sha256-{step_dir.name}.json"
        c.write_text(json.dumps({"step": int(step_dir.name), "sha256": "0" * 64}))
        return
    files = [p for p in (step_dir / "default").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for f in files:
        data = f.read_bytes()
        i = len(data) // 2
        f.write_bytes(data[:i] + bytes([data[i] ^ 0x01, data[i + 1] ^ 0x80]) + data[i + 2:]
                      if how == "flip" else data[: len(data) // 3])


@pytest.mark.parametrize("how", ["flip", "truncate", "checksum"])
def test_damaged_checkpoint_falls_back_and_never_changes_a_finished_run(tiny_run, capsys, how):
    before = (tiny_run / "summary.json").read_bytes()
    assert (tiny_run / "ckpt" / "sha256-100.json").exists()
    _flip_checkpoint(tiny_run / "ckpt" / "100", how)
    code, _, _ = _run(capsys, tiny_run)                          # finished: left alone
    assert code == 0 and (tiny_run / "summary.json").read_bytes() == before
    code, _, err = _run(capsys, tiny_run, "--reevaluate")        # asked: falls back to step 50
    assert code == 0, err
    assert "falling back to the previous checkpoint" in err
    after = json.loads((tiny_run / "summary.json").read_text())
    assert after["resumed_from_step"] == 50
    assert after["error_rate"] == json.loads(before)["error_rate"]   # retrained to the same state


def test_eval_only_change_reevaluates_without_retraining(tiny_run, capsys):
    code, _, err = _run(capsys, tiny_run, cfg={**TINY, "eval_samples": 3000})
    assert code == 0, err
    s = json.loads((tiny_run / "summary.json").read_text())
    assert s["error_rate"]["inner"]["n"] == 3000 and s["resumed_from_step"] == 100
    changes = json.loads((tiny_run / "manifest.json").read_text())["config_changes"]
    assert changes[-1]["changes"] == {"eval_samples": [1000, 3000]}
    code, _, err = _run(capsys, tiny_run, cfg={**TINY, "hidden": 7})   # not evaluation-only
    assert_one_error(code, err, "hidden: 6 -> 7")


def test_restart_before_first_checkpoint_keeps_one_step0_line(tiny_run, capsys):
    import shutil

    p = tiny_run / "metrics.jsonl"
    first = p.read_text().splitlines()[0]
    assert json.loads(first)["step"] == 0
    p.write_text(first + "\n")                   # as left by a kill before the first checkpoint
    shutil.rmtree(tiny_run / "ckpt")
    (tiny_run / "summary.json").unlink()
    code, _, err = _run(capsys, tiny_run)
    assert code == 0, err
    steps = [json.loads(l)["step"] for l in p.read_text().splitlines()]
    assert steps == [0, 50, 100]


def test_corrupt_npz_names_the_file(tmp_path):
    rd = RunDir.open(tmp_path, "x", {"a": 1})
    p = rd.save_arrays("params-FC", w=np.ones((3, 3)))
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(RunFileError, match="params-FC.npz"):
        rd.load_arrays("params-FC")


def test_wrong_shape_or_foreign_params_file_names_the_file(tmp_path):
    """Issue 20 item 10: a params-*.npz of another model (or damaged) is refused with the file's
    name and the fix, before any evaluation; the matching file loads."""
    import jax
    import numpy as np

    from spheres.images import models as im
    from spheres.images import train as itrain
    from spheres.results import RunDir
    from spheres.run_files import RunFileError

    module = im.SoftmaxRegression()
    rd = RunDir.open(tmp_path / "run", "test-params", {"x": 1})
    good = im.init_variables(module, jax.random.key(0))
    itrain.save_params(rd, "m", good)
    itrain.check_params_match(itrain.load_params(rd, "m"), module, itrain.params_file(rd, "m"))
    flat = {k: np.asarray(v) for k, v in
            __import__("flax").traverse_util.flatten_dict(good["params"], sep="/").items()}
    k0 = sorted(flat)[0]
    rd.save_arrays("params-m", **{**flat, k0: np.zeros((3, 3), np.float32)})
    with pytest.raises(RunFileError, match=r"params-m\.npz: parameter .* has shape \(3, 3\).*delete the file"):
        itrain.check_params_match(itrain.load_params(rd, "m"), module, itrain.params_file(rd, "m"))
    rd.save_arrays("params-m", other=np.zeros(2, np.float32))
    with pytest.raises(RunFileError, match=r"params-m\.npz: parameters do not match the model"):
        itrain.check_params_match(itrain.load_params(rd, "m"), module, itrain.params_file(rd, "m"))


def test_image_eval_only_change_reattacks_without_retraining(tmp_path):
    """Issue 20 item 8 for image runs: a finished szegedy-table1 run reopened with another
    ``n_attack`` reuses its trained parameters (same bytes) and re-makes its adversarial examples
    (the cached ``adv-*.npz`` carries the config it was made under); a training key is refused."""
    import numpy as np

    from spheres.experiments import run_experiment

    out = tmp_path / "t1"
    tiny = ["models=FC10(1e-4)", "n_train=500", "n_test=100", "epochs=1", "n_attack=4", "attack_chunk=4",
            "c_rounds=2", "lbfgs_maxiter=5"]
    s1 = run_experiment("szegedy-table1", out, preset="quick", overrides=tiny, progress=False)
    params = (out / "params-FC10_1e-4.npz").read_bytes()
    adv1 = dict(np.load(out / "adv-FC10_1e-4.npz"))
    more = [o if not o.startswith("n_attack") else "n_attack=6" for o in tiny]
    s2 = run_experiment("szegedy-table1", out, preset="quick", overrides=more, progress=False)
    assert (out / "params-FC10_1e-4.npz").read_bytes() == params          # not retrained
    adv2 = dict(np.load(out / "adv-FC10_1e-4.npz"))
    first = next(k for k in adv1 if k != "__config__" and adv1[k].ndim >= 1)
    assert len(adv1[first]) == 4 and len(adv2[first]) == 6                 # re-attacked
    assert s1["attack"]["n_attacked"] == 4 and s2["attack"]["n_attacked"] == 6
    changes = json.loads((out / "manifest.json").read_text())["config_changes"]
    assert changes[-1]["changes"] == {"n_attack": [4, 6]}
    with pytest.raises(RunDirConflict, match="epochs: 1 -> 2"):
        run_experiment("szegedy-table1", out, preset="quick",
                       overrides=[o if not o.startswith("epochs") else "epochs=2" for o in more], progress=False)


@pytest.mark.parametrize("name,setting,key", [("goodfellow-rubbish", "n_rubbish=10000000000", "n_rubbish"),
                                              ("goodfellow-fgsm", "maxout_units=1000000", "maxout_units")])
def test_image_memory_estimate_names_the_key_to_lower(name, setting, key, tmp_path, capsys):
    from spheres.cli import main

    out = tmp_path / "r"
    code = main(["run", name, "--out", str(out), "--set", setting])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and f"lower {key}" in err[-1] and not out.exists(), err
