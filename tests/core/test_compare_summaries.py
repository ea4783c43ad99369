"""tools/compare_summaries.py: a recursive JSON diff of summaries that skips timing keys."""

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "compare_summaries", Path(__file__).resolve().parents[2] / "tools" / "compare_summaries.py")
cs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cs)


def test_diff_reports_every_difference_and_skips_timing_keys():
    old = {"a": 1, "wall_seconds": 3.0, "m": {"x": [1, 2.5, float("nan")], "train_seconds": 1.0}, "gone": "x"}
    new = {"a": 1, "wall_seconds": 4.0, "m": {"x": [1, 2.5000001, float("nan")], "train_seconds": 2.0}, "added": True}
    assert cs.diff(old, new) == ["added: <missing> -> true", 'gone: "x" -> <missing>', "m.x[1]: 2.5 -> 2.5000001"]
    assert cs.diff(old, new, tol=1e-6, ignore=cs.DEFAULT_IGNORE + ("gone", "added")) == []
    assert cs.diff({"steps_per_second": 1}, {"steps_per_second": 2}) == []
    assert cs.diff({"s": 1}, {"s": 1.0}) == [] and cs.diff({"b": True}, {"b": 1}) == ["b: true -> 1"]
    assert cs.diff([1, 2], [1, 2, 3]) == [": list of 2 -> list of 3: [1, 2] -> [1, 2, 3]"]


def test_compare_pairs_run_directories_and_sets_the_exit_status(tmp_path, capsys):
    for side, value in (("old", 1), ("new", 1)):
        (tmp_path / side / "exp-a").mkdir(parents=True)
        (tmp_path / side / "exp-a" / "summary.json").write_text(json.dumps({"v": value, "wall_seconds": value}))
    assert cs.main([str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert "exp-a: identical" in capsys.readouterr().out
    (tmp_path / "old" / "exp-b").mkdir()
    (tmp_path / "old" / "exp-b" / "summary.json").write_text("{}")
    (tmp_path / "new" / "exp-a" / "summary.json").write_text(json.dumps({"v": 2}))
    assert cs.main([str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    out = capsys.readouterr().out
    assert "exp-a: 1 difference(s)\n  v: 1 -> 2" in out and "exp-b: only in OLD" in out
    assert cs.main([str(tmp_path / "old" / "exp-a" / "summary.json"), str(tmp_path / "new" / "exp-a" / "summary.json"),
                    "--no-default-ignores", "--ignore", "v"]) == 1   # wall_seconds present on one side only
    with pytest.raises(SystemExit):
        cs.main([str(tmp_path / "nowhere"), str(tmp_path / "new")])
