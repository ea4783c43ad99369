"""Starting a run over several processes: bad combinations give one clear line and exit 2 (most
without starting JAX), cluster variables are read, and the library pieces (broadcast, the writer's
errors, exact error counts, attack rows split over processes) work across two real processes."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _procs import Procs, env, free_port, launch_args
from spheres import distributed
from spheres.cli import main, parse_shard


def _one_line(capsys, code, fragment):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("spheres: error:") and fragment in err[0], err


@pytest.mark.parametrize("flags,fragment", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1234"],
     "--process-id 2 is outside 0..1"),
    (["--num-processes", "2", "--process-id", "-1", "--coordinator", "127.0.0.1:1234"],
     "--process-id -1 is outside 0..1"),
    (["--num-processes", "0", "--process-id", "0", "--coordinator", "127.0.0.1:1234"],
     "--num-processes must be at least 1"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "127.0.0.1:99999"],
     "expected HOST:PORT with a port in 1..65535"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "localhost"], "expected HOST:PORT"),
    (["--num-processes", "2", "--process-id", "0"], "--coordinator missing"),
    (["--coordinator", "127.0.0.1:1234"], "--num-processes, --process-id missing"),
    (["--distributed", "--num-processes", "2"], "--distributed reads the cluster's variables"),
    (["--num-processes", "2", "--process-id", "1", "--coordinator", "127.0.0.1:1234",
      "--init-timeout", "0"], "--init-timeout must be at least 1 second"),
    (["--shard", "2/2"], "expected K/N with 0 <= K < N"),
    (["--shard", "x"], "expected K/N"),
    (["--shard", "0/2", "--force"], "--force does not go with --shard"),
])
def test_bad_launch_flags_give_one_line_and_exit_2(flags, fragment, capsys):
    _one_line(capsys, main(["run", "sphere-dimension-sweep", *flags]), fragment)


def test_shard_of_an_experiment_that_is_not_a_sweep(capsys, tmp_path):
    _one_line(capsys, main(["run", "sphere-quadratic", "--shard", "0/2", "--out", str(tmp_path / "r")]),
              "sphere-quadratic is not one")
    assert not (tmp_path / "r").exists()


def test_unreachable_coordinator_fails_within_the_timeout(capsys):
    t0 = time.time()
    code = main(["run", "sphere-quadratic", *launch_args(free_port(), 2, 1, timeout=2)])
    _one_line(capsys, code, "cannot reach the coordinator 127.0.0.1:")
    assert time.time() - t0 < 20


def test_missing_processes_fail_process_0_within_the_timeout(capsys):
    t0 = time.time()
    code = main(["run", "sphere-quadratic", *launch_args(free_port(), 3, 0, timeout=2)])
    _one_line(capsys, code, "only 1 of 3 processes connected to 127.0.0.1:")
    assert time.time() - t0 < 20


def test_processes_that_disagree_on_the_count_are_refused():
    """Process 0 (told 2 processes) and process 1 (told 3) meet on the port: both refuse, with the
    reason, before either starts JAX."""
    import threading

    port, errors = free_port(), {}

    def join(n, i):
        try:
            distributed._rendezvous(distributed.Launch(f"127.0.0.1:{port}", n, i, timeout=20))
        except distributed.DistributedError as e:
            errors[i] = str(e)

    threads = [threading.Thread(target=join, args=a) for a in ((2, 0), (3, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert "--num-processes 3 differs from process 0's 2" in errors[0]
    assert "refused process 1" in errors[1]


def test_batch_not_divisible_by_every_device_of_every_process(tmp_path):
    with Procs(tmp_path) as ps:      # the quick preset's batch 50 over 2 processes x 2 devices
        two = ps.start_two(["run", "sphere-quadratic", "--out", str(tmp_path / "run")], name="p")
        assert ps.wait(*two) == [2, 2]
        for p in two:
            lines = [x for x in ps.err(p).splitlines() if x.startswith("spheres: error")]
            assert lines == ["spheres: error: batch 50 is not divisible by the 4 devices of 2 "
                             "processes; use a multiple of 4"], ps.err(p)
    assert not (tmp_path / "run").exists()


def test_parse_launch_and_cluster_variables():
    assert distributed.parse_launch(None, None, None, environ={}) is None
    assert distributed.parse_launch("h:1", 1, 0, environ={}) is None          # one process: no init
    launch = distributed.parse_launch("[::1]:80", 4, 3, environ={})
    assert launch.host_port == ("::1", 80) and not launch.auto
    slurm = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    assert distributed.cluster_environment(slurm) == "slurm"
    assert distributed.parse_launch(None, None, None, environ=slurm).auto
    # a job array's task is one process: an independent run, no coordinator
    assert distributed.cluster_environment({**slurm, "SLURM_NTASKS": "1"}) is None
    assert distributed.parse_launch(None, None, None, auto=True, environ={}).auto
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None


def test_experiments_that_run_on_one_process_only_say_so(monkeypatch, tmp_path):
    from spheres import experiments
    from spheres.config import ConfigError

    monkeypatch.setattr(distributed, "process_count", lambda: 2)
    with pytest.raises(ConfigError, match="goodfellow-logistic runs on one process only"):
        experiments.run_experiment("goodfellow-logistic", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_library_pieces_across_two_processes(tmp_path):
    script = Path(__file__).with_name("_library_script.py")
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(port), str(i), str(tmp_path / f"{i}.json")],
                              env=env(2), stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{i}.err", "w"))
             for i in range(2)]
    try:
        for p in procs:
            assert p.wait(180) == 0, (tmp_path / "0.err").read_text()[-3000:] + (tmp_path / "1.err").read_text()[-3000:]
    finally:
        Procs.kill(*procs)
    found = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    for i, f in enumerate(found):
        assert f["process_count"] == 2 and f["device_count"] == 4 and f["writer"] == (i == 0)
        assert f["bytes"] == "from process 0" and f["empty"] == ""
        assert f["on_writer"] == {"me": 0}
        assert f["error"][1] == "bad on the writer"          # re-raised on process 1 too
        assert f["errors_global"] == f["errors_local"] > 0   # exact integer sum over processes
        assert f["attack_rows"] == 7 and f["attack_success_equal"]
        assert f["attack_max_gap"] <= 1e-5                   # per-example attack, other batch size
    assert found[0]["errors_global"] == found[1]["errors_global"]


@pytest.mark.parametrize("me", [0, 1])
def test_process_0_leaving_with_an_error_outlives_the_others(me, monkeypatch):
    """JAX aborts every process the moment process 0's coordination service goes away, so process 0
    leaving with an error sends ``E`` and returns only once its peers have closed their
    connections (exited), or after ``2 * _GRACE``; any other process returns at once."""
    import socket
    import threading

    monkeypatch.setattr(distributed, "_GRACE", 0.5)
    here, there = socket.socketpair()
    watch = distributed._Watchdog({1 - me: here}, me, 2)
    done = threading.Event()
    threading.Thread(target=lambda: (watch.finish(False), done.set()), daemon=True).start()
    assert there.recv(1) == b"E" and there.recv(1) == b""      # the byte, then this side's end
    if me == 1:
        assert done.wait(5)
        return
    assert not done.wait(0.3)             # the peer is still running: process 0 stays
    there.close()                         # the peer exits
    assert done.wait(5)

    here, there = socket.socketpair()     # a peer that never exits: process 0 leaves after 2 * _GRACE
    watch = distributed._Watchdog({1: here}, 0, 2)
    t0 = time.time()
    watch.finish(False)
    assert 0.9 <= time.time() - t0 < 5
    there.close()
