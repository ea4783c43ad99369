"""Two real processes on this machine (127.0.0.1, gloo), each with 2 simulated CPU devices, run
sphere-quadratic (shrunk: `_procs.SMALL`) as one run over 4 devices: the same result as one process
with the same 4 devices, one copy of every run file, a killed process stops the other at once with
one clear line, and the run resumes (with the same process count only: the refusal of another
count is `test_another_process_count_does_not_resume`)."""

import json

import pytest

from _procs import SMALL, Procs, wait_for

# the uninterrupted pair also attacks 10 inner-sphere points, split over the processes by
# `spheres.sharding.across_processes` (5 rows each)
ATTACKED = [*SMALL[:-2], "--set", "attack_samples=10", "--set", "attack_steps=30", "--set", "worst_case_steps=20"]


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted two-process run (process 1 started in another, empty, working directory:
    the relative --out would land there if it wrote anything) and a one-process run over 4 devices,
    started together."""
    tmp = tmp_path_factory.mktemp("two")
    with Procs(tmp / "logs") as ps:
        two = ps.start_two(["run", "sphere-quadratic", *ATTACKED, "--out", "run"], name="two",
                           cwds=(tmp / "p0", tmp / "p1"))
        one = ps.start(["run", "sphere-quadratic", *ATTACKED, "--out", "run"], name="one",
                       cwd=tmp / "one", devices=4)
        codes = ps.wait(*two, one)
        assert codes == [0, 0, 0], [ps.err(p)[-3000:] for p in (*two, one)]
        yield {"two": tmp / "p0" / "run", "one": tmp / "one" / "run", "p1": tmp / "p1",
               "out0": ps.out(two[0]), "out1": ps.out(two[1])}


def test_two_processes_give_the_one_process_result(runs):
    two, one = _summary(runs["two"]), _summary(runs["one"])
    for sphere in ("inner", "outer"):            # integer counts summed over the processes: exact
        assert two["error_rate"][sphere]["errors"] == one["error_rate"][sphere]["errors"]
        assert two["error_rate"][sphere]["n"] == one["error_rate"][sphere]["n"] == 20_000
    # the same global batches on the same 4 devices; only the all-reduce (gloo across processes,
    # in-process on one) may round differently
    assert two["final_train_loss"] == pytest.approx(one["final_train_loss"], rel=1e-5)
    m2, m1 = _metrics(runs["two"]), _metrics(runs["one"])
    assert [m["step"] for m in m2] == [m["step"] for m in m1] == [0, 250, 500]
    for a, b in zip(m2, m1):
        assert a.get("loss", 0.0) == pytest.approx(b.get("loss", 0.0), rel=1e-5)
        assert a["alpha_below"] == b["alpha_below"] and a["alpha_above"] == b["alpha_above"]
    man = json.loads((runs["two"] / "manifest.json").read_text())
    assert man["environment"]["process_count"] == 2 and man["environment"]["device_count"] == 4
    assert json.loads((runs["two"] / "ckpt" / "process_count.json").read_text()) == {"process_count": 2}


def test_attacks_split_over_processes_give_the_one_process_result(runs):
    """The manifold analysis attacks each process's block of the points and gathers them: the same
    points, per-point distances and exact lower ends as one process (float rounding of the attack's
    reductions only: 1e-5 relative)."""
    import numpy as np

    a2, a1 = _summary(runs["two"])["attacks"], _summary(runs["one"])["attacks"]
    assert a2["n_points"] == a1["n_points"] == 10 and a2["start_errors"] == a1["start_errors"]
    for side in ("on_manifold_nearest", "off_manifold_nearest"):
        assert a2[side]["found"] == a1[side]["found"]
        assert a2[side]["bracket"]["kind"] == "exact" and a2[side]["bracket"]["violations"] == 0
    z2, z1 = np.load(runs["two"] / "attacks.npz"), np.load(runs["one"] / "attacks.npz")
    for k in ("off_manifold_distance", "on_manifold_distance", "off_manifold_lower"):
        np.testing.assert_allclose(z2[k], z1[k], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(z2["start_error"], z1["start_error"])


def test_only_process_0_writes_and_prints(runs):
    assert not any(runs["p1"].iterdir()), list(runs["p1"].iterdir())    # process 1 wrote nothing
    assert "error rate, inner sphere" in runs["out0"] and runs["out1"] == ""
    # one writer: one metrics line per chunk, one start in the manifest
    assert [m["step"] for m in _metrics(runs["two"])] == [0, 250, 500]
    assert len(json.loads((runs["two"] / "manifest.json").read_text())["starts"]) == 1
    assert not (runs["two"] / ".lock").exists()


def test_a_killed_process_stops_the_other_and_the_run_resumes(runs, tmp_path):
    out = tmp_path / "run"
    with Procs(tmp_path / "logs") as ps:
        p0, p1 = ps.start_two(["run", "sphere-quadratic", *SMALL, "--out", str(out)], name="first")
        wait_for(lambda: (out / "ckpt" / "250").is_dir(), 180, "the first checkpoint", (p0, p1))
        ps.kill(p1)                                                  # SIGKILL mid-run
        assert ps.wait(p0, timeout=60) == [1]                        # stops at once, not a hang
        line = ps.last_line(p0)
        assert line.startswith("spheres: error: process 1 of 2 stopped without finishing"), ps.err(p0)
        assert "Traceback" not in ps.err(p0)
        assert not (out / "summary.json").exists()

        # both processes again: resumes from the checkpoint and ends exactly as the uninterrupted run
        again = ps.start_two(["run", "sphere-quadratic", *SMALL, "--out", str(out)], name="again")
        assert ps.wait(*again) == [0, 0], [ps.err(p)[-3000:] for p in again]
    resumed, whole = _summary(out), _summary(runs["two"])
    assert resumed["resumed_from_step"] in (250, 500)
    assert resumed["error_rate"] == whole["error_rate"]
    assert resumed["final_train_loss"] == whole["final_train_loss"]
    assert _metrics(out) == _metrics(runs["two"])


def test_another_process_count_does_not_resume(tmp_path):
    """A checkpoint saved by 2 processes does not resume training under 1 (one line through the
    CLI: `CheckpointError` is a ValueError); a finished run's final checkpoint still restores."""
    import jax.numpy as jnp

    from spheres.checkpoint import CheckpointError, Checkpoints

    state = {"w": jnp.arange(3.0), "step": jnp.asarray(250, jnp.int32)}
    with Checkpoints(tmp_path) as ck:
        ck.save(250, state)
    (tmp_path / "process_count.json").write_text('{"process_count": 2}')
    (tmp_path / "sha256-250.json").unlink()          # as after a kill before the checksum
    with pytest.raises(CheckpointError, match="trained to step 250 by 2 processes and this start "
                                              "has 1; resume it with --num-processes 2"):
        with Checkpoints(tmp_path) as ck:
            ck.restore_or(state, final_step=500)
    with Checkpoints(tmp_path) as ck:
        assert int(ck.restore_or(state, final_step=250)["step"]) == 250
        assert int(ck.restore_or(state)["step"]) == 250
