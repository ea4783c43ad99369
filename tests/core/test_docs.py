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


def test_bracket_digest_reports_each_archived_bracket():
    """The digest on the Gilmer page has one row per bracket of the records, with the records' numbers;
    a synthetic pair of brackets checks the sentence's arithmetic (ratios ×1.5 and ×3, one violation)."""
    from spheres import report
    from spheres.results import load_run

    records = [(p.name, load_run(p)["summary"]) for p in sorted(RUNS.iterdir()) if (p / "summary.json").exists()]
    found = [(name, b) for name, s in records for _, b in report._brackets(s) if b["kind"] in ("exact", "certified")]
    table = [line for line in report.bracket_digest(records).splitlines() if line.startswith("| `")]
    assert len(table) == len(found) > 0
    for (name, b), line in zip(found, table):
        assert line.startswith(f"| `{name}` |") and f"| {b['kind']} |" in line
        if b["upper_mean"] is not None:
            assert f"| {b['upper_mean']:.4f} |" in line
    assert all(b["violations"] == 0 for _, b in found)

    def stats(ratio, violations):
        return {"kind": "certified", "n": 10, "n_correct": 10, "lower_mean": 0.1, "upper_mean": 0.1 * ratio,
                "upper_mean_found": 0.1 * ratio, "lower_mean_found": 0.1, "ratio_mean": ratio,
                "ratio_max": 2 * ratio, "fraction_tight": 1.0 if ratio <= 2 else 0.0, "violations": violations,
                "no_error": 0, "attack_failed": 0}

    fake = {"attacks": {"on_manifold_nearest": {"bracket": stats(1.5, 1)}},
            "rows": [{"train_size": 1000, "attack_bracket": stats(3.0, 0)}],
            "points": [{"model": "relu", "train_size": 10, "step": 2500, "bracket": stats(3.0, 0)}]}
    assert [report._bracket_where(p) for p, _ in report._brackets(fake)] == [
        "on-manifold", "N = 1,000", "relu, N = 10, step 2,500"]
    digest = report.bracket_digest([("fake", fake)])
    assert "| `fake` | on-manifold | certified | 0.1000 | 0.1500 | 1.500 / 3.000 | 100% | 1 |" in digest
    assert "×1.50–×3.00 the certified radius" in digest and "0%–100% of points" in digest
    assert "1 violation (attack below the lower end)" in digest and "Quadratic nets" not in digest
    assert report.bracket_digest([("empty", {"rows": []})]) == ""
