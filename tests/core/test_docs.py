"""The generated pages are current: each results page regenerates byte for byte from the archived
runs in docs/runs/, and every archived run names a commit of this repository's history made from a
clean tree."""

import json
import subprocess
from pathlib import Path

import pytest

from spheres.report import results_page

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "docs" / "runs"


@pytest.mark.parametrize("paper", ["gilmer", "szegedy", "goodfellow"])
def test_results_page_regenerates_from_the_run_records(paper):
    page = ROOT / "docs" / "results" / f"{paper}.md"
    assert page.exists(), f"{page} is missing: run `make docs`"
    assert results_page(paper, RUNS, page) == page.read_text(), f"{page} is stale: run `make docs`"


def test_benchmarks_page_regenerates_from_the_json():
    from benchmarks.report import page

    assert page(ROOT / "benchmarks" / "results") == (ROOT / "docs" / "benchmarks.md").read_text(), \
        "docs/benchmarks.md is stale: run `make docs`"


def _records():
    return sorted(p.parent for p in RUNS.rglob("manifest.json"))


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.skipif(_git("rev-parse", "--is-inside-work-tree").returncode != 0,
                    reason="not a git checkout (an sdist or wheel): run records cannot be traced")
def test_every_run_record_names_a_clean_commit_of_this_history():
    for rec in _records():
        env = json.loads((rec / "manifest.json").read_text()).get("environment", {})
        commit = env.get("git_commit")
        assert commit, f"{rec}: the manifest names no commit"
        assert "dirty" not in commit, f"{rec}: made from uncommitted code ({commit})"
        r = _git("merge-base", "--is-ancestor", commit, "HEAD")
        assert r.returncode == 0, f"{rec}: commit {commit} is not an ancestor of HEAD"


def test_readme_example_runs(capsys):
    """The README's "attack your own model" block runs as written and prints its two results."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Attack your own model", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "robust accuracy: attack=apgd" in out and "95% interval" in out


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    assert "../shared" not in "\n".join(lines)
