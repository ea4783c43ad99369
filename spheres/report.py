"""Paper-versus-ours Markdown from run directories: ``spheres report`` and the results pages.

For every run directory: a header (experiment, preset, seed, devices, commit), the experiment's
paper rows (*quantity | paper | ours*, the paper's value with where it says so and how sure we are:
`spheres.paper`), its result tables (`spheres.tables`) and its figures. The paper values are the
experiments' own data, never used as results. A run that cannot be read is listed as unreadable
with the reason; it does not stop the report.

Records of the same run that differ only in their seed are also read together: an experiment
with ``seed_rows`` gets one more section comparing the paper with the spread across seeds
(`seed_sections`).

``results_page(paper, runs)`` is the page of one paper (``docs/results/<paper>.md``, written by
``make docs``): every archived run of that paper's experiments, in a fixed order.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import PRESET_ALIASES
from .paper import PAPERS
from .results import load_run

RESULTS_INTRO = {
    "gilmer": ("Every number below comes from a run record in `docs/runs/` (its manifest names the "
               "commit it ran from); regenerate this page with `make docs`.\n\n"
               "Distances to the nearest error are brackets, lower end ≤ true distance ≤ attack: an "
               "attack can only overstate a distance, so records made since the brackets were added "
               "show beside it the exact distance for a quadratic net (then `attack/exact` is the "
               "attack's optimality gap, and d(E)/bound is exact up to the sampling of the points) "
               "and CROWN's certified radius for a ReLU net (a proven lower bound; the share of points "
               "whose bracket is within ×2 says how much the attack could still be missing). A record "
               "without these rows predates them."),
    "szegedy": ("Every image result here is on Fashion-MNIST, because MNIST cannot be downloaded on "
                "the machine these runs were made on; the paper's numbers are for MNIST, so a row "
                "compares different data sets and says so. To run on MNIST, put its four IDX files "
                "in a directory and add `--data-dir DIR --set dataset=mnist`. Every number comes from "
                "a run record in `docs/runs/`; regenerate this page with `make docs`."),
}
RESULTS_INTRO["goodfellow"] = RESULTS_INTRO["szegedy"]


def find_runs(paths) -> list[Path]:
    """Run directories among ``paths`` (a directory without ``config.json`` contributes its children)."""
    out = []
    for p in map(Path, paths):
        if (p / "config.json").exists():
            out.append(p)
        elif p.is_dir():
            out += sorted(c for c in p.iterdir() if (c / "config.json").exists())
        else:
            raise FileNotFoundError(f"{p} is not a run directory nor a directory of runs")
    if not out:
        raise FileNotFoundError(f"no run directories (with config.json) under {', '.join(map(str, paths))}")
    return out


def _header(name: str, path: Path, man: dict, shown: str) -> str:
    env = man.get("environment", {})
    commit = (env.get("git_commit") or "?")[:12]
    return (f"### {name}\n\nrun `{shown}` · preset **{man.get('preset', '?')}** · seed {man.get('seed')} · "
            f"{env.get('backend', '?')} × {env.get('device_count', '?')} ({env.get('device_kind', '')}) · "
            f"jax {env.get('jax', '?')} · commit {commit}")


def paper_table(rows) -> str:
    """Markdown *quantity | paper | ours* from `spheres.paper.PaperRow` s."""
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    return "| quantity | paper | ours |\n|---|---|---|\n" + "\n".join(
        "| " + " | ".join(map(esc, r.cells())) + " |" for r in rows)


def run_section(path: Path, rel_to: Path | None = None) -> str:
    """The Markdown section of one run directory (figures linked relative to ``rel_to``)."""
    from . import experiments

    shown = os.path.relpath(path, rel_to) if rel_to else str(path)
    run = load_run(path)
    name = run["config"]["experiment"]
    s = run["summary"]
    head = _header(name, path, run["manifest"], shown)
    if s is None:
        return head + "\n\n(unfinished: rerun the same command to resume)\n"
    parts = [head + (f" · wall time {s['wall_seconds']:.0f} s" if "wall_seconds" in s else "")
             + (f" · dataset **{s['dataset']}**" if "dataset" in s else "")]
    exp = experiments.get(name)
    if exp.paper_rows is not None:
        rows = exp.paper_rows(s)
        if rows:
            parts.append(paper_table(rows))
    parts.append(exp.table(s).markdown())
    for png in sorted(path.glob("*.png")):
        target = os.path.relpath(png, rel_to) if rel_to else str(png)
        parts.append(f"![{png.stem}]({target})")
    return "\n\n".join(parts) + "\n"


def _section_or_unreadable(path: Path, rel_to: Path | None) -> str:
    try:
        return run_section(path, rel_to)
    except (OSError, ValueError, KeyError, TypeError) as e:
        where = getattr(e, "filename", None) or path
        return f"### {path.name}\n\n**unreadable run** `{where}`: {type(e).__name__}: {e}\n"


def seed_groups(paths) -> list[tuple[str, str, list[Path]]]:
    """``(experiment, preset, [run directories])`` for every set of finished records under ``paths``
    whose configs are equal but for the seed, with at least two distinct seeds (ordered by seed;
    unreadable or unfinished records are left out; a preset alias counts as its preset: ``full`` is
    ``paper``)."""
    import json

    groups: dict[tuple, dict[int, Path]] = {}
    for p in paths:
        try:
            run = load_run(p)
        except (OSError, ValueError):
            continue
        if run["summary"] is None:
            continue
        cfg = dict(run["config"].get("config", {}))
        seed = cfg.pop("seed", None)
        preset = run["manifest"].get("preset", "?")
        key = (run["config"].get("experiment"), PRESET_ALIASES.get(preset, preset), json.dumps(cfg, sort_keys=True))
        groups.setdefault(key, {}).setdefault(seed, p)
    return [(exp, preset, [by_seed[s] for s in sorted(by_seed)])
            for (exp, preset, _), by_seed in sorted(groups.items()) if len(by_seed) >= 2]


def seed_sections(paths, rel_to: Path | None = None) -> str:
    """The across-seeds section of every `seed_groups` group whose experiment has ``seed_rows``."""
    from . import experiments

    out = []
    for exp_name, preset, group in seed_groups(paths):
        exp = experiments.get(exp_name)
        if exp.seed_rows is None:
            continue
        runs = [load_run(p) for p in group]
        seeds = ", ".join(str(r["manifest"].get("seed")) for r in runs)
        shown = ", ".join(f"`{os.path.relpath(p, rel_to) if rel_to else p}`" for p in group)
        out.append(f"### {exp_name} across seeds\n\npreset **{preset}** · seeds {seeds} · runs {shown} "
                   f"(configs equal but for the seed)\n\n" + paper_table(exp.seed_rows([r["summary"] for r in runs]))
                   + "\n")
    return "\n".join(out)


def build_report(paths, out: Path | None = None) -> str:
    """The report of every run under ``paths``; figure links relative to ``out`` when given."""
    runs = find_runs(paths)
    rel = out.parent.resolve() if out else None
    body = "\n".join(_section_or_unreadable(p.resolve() if rel else p, rel) for p in runs)
    seeds = seed_sections([p.resolve() if rel else p for p in runs], rel)
    return "# Paper vs ours\n\n" + body + (f"\n{seeds}" if seeds else "")


def _brackets(o, path=()):
    """``(path, bracket)`` for every ``spheres.sphere.bracket.bracket_stats`` dict inside a summary."""
    if isinstance(o, dict):
        if "kind" in o and "ratio_mean" in o and "fraction_tight" in o:
            yield path, o
        for k, v in o.items():
            yield from _brackets(v, (*path, str(k)))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _brackets(v, (*path, _row_label(v, i)))


def _row_label(row, i: int) -> str:
    """A list entry's name from its model / training-set size / step, else its position."""
    if not isinstance(row, dict):
        return f"#{i + 1}"
    parts = ([str(row["model"])] if "model" in row else []) + (
        [f"N = {row['train_size']:,}"] if "train_size" in row else []) + (
        [f"step {row['step']:,}"] if "step" in row else [])
    return ", ".join(parts) or f"#{i + 1}"


def _bracket_where(path) -> str:
    names = {"on_manifold_nearest": "on-manifold", "off_manifold_nearest": "off-manifold"}
    parts = [names.get(p, p) for p in path if p not in ("attacks", "bracket", "attack_bracket", "rows", "points")]
    return " / ".join(parts) or "-"


def _violations(brackets) -> str:
    n = sum(b["violations"] for b in brackets)
    return f"{n} violation{'' if n == 1 else 's'} (attack below the lower end)"


def bracket_digest(records) -> str:
    """How tight the distance brackets of ``records`` ``[(run name, summary dict)]`` are: one table row
    per bracket (lower end, attack, attack/lower) and a sentence per kind ("" when there is none)."""
    rows, by_kind = [], {}
    for name, summary in records:
        for where, b in _brackets(summary or {}):
            if b["kind"] not in ("exact", "certified"):
                continue
            f = lambda v, spec=".4f": "-" if v is None else format(v, spec)  # noqa: E731
            lower = "∞ (no error)" if b["no_error"] and b["no_error"] == b["n_correct"] else f(b["lower_mean"])
            rows.append(f"| `{name}` | {_bracket_where(where)} | {b['kind']} | {lower} | {f(b['upper_mean'])} | "
                        f"{f(b['ratio_mean'], '.3f')} / {f(b['ratio_max'], '.3f')} | "
                        f"{f(b['fraction_tight'], '.0%')} | {b['violations']} |")
            if b["ratio_mean"] is not None:
                by_kind.setdefault(b["kind"], []).append(b)
    if not rows:
        return ""
    text = ["### How tight the brackets are", "",
            "| run | where | lower end | lower mean | attack mean | attack/lower mean / worst | within ×2 | violations |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]
    if "exact" in by_kind:
        bs = by_kind["exact"]
        text.append(f"Quadratic nets ({len(bs)} brackets with an error to find): the attack is within "
                    f"×{max(b['ratio_mean'] for b in bs):.3f} of the exact distance on average and "
                    f"×{max(b['ratio_max'] for b in bs):.3f} at its worst point, with "
                    f"{_violations(bs)}. Their d(E) is known exactly, and so is "
                    "their ratio to Theorem 5.1's bound: where those runs sit close to the bound, the "
                    "paper's claim is confirmed without the caveat an attack carries.")
    if "certified" in by_kind:
        bs = by_kind["certified"]
        lo, hi = min(b["ratio_mean"] for b in bs), max(b["ratio_mean"] for b in bs)
        tight = [b["fraction_tight"] for b in bs if b["fraction_tight"] is not None]
        text.append(f"{'' if 'exact' not in by_kind else chr(10)}ReLU + BatchNorm nets ({len(bs)} brackets): the attack's "
                    f"distance is ×{lo:.2f}–×{hi:.2f} the certified radius on average"
                    + (f", and {min(tight):.0%}–{max(tight):.0%} of points have a bracket within ×2" if tight else "")
                    + f", with {_violations(bs)}. The true d(E) of a ReLU net lies "
                    "anywhere in that bracket: its ratio to the bound is known only up to that factor, so "
                    "these runs can neither confirm nor refute that ReLU nets sit close to the bound; "
                    "the attack's distance is the paper's measurement and an upper end.")
    return "\n".join(text) + "\n"


def results_page(paper: str, runs_dir: Path, out: Path) -> str:
    """``docs/results/<paper>.md``: the archived runs of ``paper``'s experiments under ``runs_dir``
    (sorted by experiment, then directory name), each as in `build_report`."""
    from . import experiments

    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; one of {', '.join(PAPERS)}")
    names = {n for n in experiments.names() if experiments.get(n).paper == paper}
    runs = []
    for p in find_runs([runs_dir]):
        try:
            exp = load_run(p)["config"].get("experiment")
        except (OSError, ValueError) as e:
            raise ValueError(f"{p}: unreadable run record ({e})") from None
        if exp in names:
            runs.append((exp, p.name, p))
    runs.sort()
    rel = out.parent.resolve()
    covered = sorted({e for e, _, _ in runs})
    missing = sorted(names - set(covered))
    lines = [f"# Results: {PAPERS[paper]}", "", RESULTS_INTRO[paper], ""]
    lines.append("Experiments with an archived run: " + ", ".join(f"`{e}`" for e in covered) + "."
                 if covered else "No archived run yet.")
    if missing:
        lines.append("")
        lines.append("No archived run (so no number shown): " + ", ".join(f"`{e}`" for e in missing) + ".")
    summaries = []
    for _, name, p in runs:
        try:
            summaries.append((name, load_run(p)["summary"]))
        except (OSError, ValueError):
            pass        # listed as unreadable in its section below
    digest = bracket_digest(summaries)
    if digest:
        lines += ["", digest]
    seeds = seed_sections([p.resolve() for _, _, p in runs], rel)
    if seeds:
        lines += ["", seeds]
    body = "\n".join(_section_or_unreadable(p.resolve(), rel) for _, _, p in runs)
    return "\n".join(lines) + "\n\n" + body
