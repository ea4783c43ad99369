"""``--shard K/N``: the jobs of a job array each run every N-th member of a sweep into the same run
directory; the same command without ``--shard`` merges them into exactly the unsharded result, and
refuses to while a shard's members are unfinished."""

import json

from _procs import Procs

SWEEP = ["run", "sphere-dimension-sweep", "--preset", "quick", "--no-progress", "--set", "dims=2,3,4",
         "--set", "widths=8,8", "--set", "steps=100", "--set", "chunk_steps=50", "--set", "ckpt_every=50",
         "--set", "eval_samples=1000", "--set", "attack_samples=0"]


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


def test_two_shards_merged_equal_the_unsharded_sweep(tmp_path):
    out, ref = tmp_path / "sharded", tmp_path / "whole"
    with Procs(tmp_path / "logs") as ps:
        first = ps.start([*SWEEP, "--out", str(out), "--shard", "0/2"], name="shard0", devices=1)
        whole = ps.start([*SWEEP, "--out", str(ref)], name="whole", devices=1)
        assert ps.wait(first) == [0], ps.err(first)
        assert "members d2, d4 finished" in ps.last_line(first)
        assert not (out / "summary.json").exists() and not (out / "d3").exists()

        early = ps.start([*SWEEP, "--out", str(out)], name="early", devices=1)    # d3 missing
        assert ps.wait(early) == [2]
        assert ps.last_line(early).startswith("spheres: error:") and "--shard 1/2" in ps.last_line(early)
        assert "d3" in ps.last_line(early) and not (out / "d3").exists()

        second = ps.start([*SWEEP, "--out", str(out), "--shard", "1/2"], name="shard1", devices=1)
        assert ps.wait(second) == [0], ps.err(second)
        written = {d: (out / d / "summary.json").stat().st_mtime_ns for d in ("d2", "d3", "d4")}
        merge = ps.start([*SWEEP, "--out", str(out)], name="merge", devices=1)
        assert ps.wait(merge, whole) == [0, 0], ps.err(merge)
        assert "sphere-dimension-sweep" in ps.out(merge)       # the merge prints the sweep's table
    merged = json.loads((out / "summary.json").read_text())
    unsharded = json.loads((ref / "summary.json").read_text())
    assert [r["d"] for r in merged["rows"]] == [2, 3, 4]
    assert _without_timing(merged) == _without_timing(unsharded)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] == 2
    assert {"d2/", "d3/", "d4/", "summary.json"} <= set(manifest["files"])
    # the merge read the members' summaries: it trained and evaluated nothing again
    assert written == {d: (out / d / "summary.json").stat().st_mtime_ns for d in written}
