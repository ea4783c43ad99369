"""Compare the ``summary.json`` files of two sets of runs, key by key.

    python tools/compare_summaries.py OLD NEW [--tol 0] [--ignore PATTERN ...] [--no-default-ignores]

OLD and NEW are run directories, directories of run directories (every ``summary.json`` below them
is paired by its path relative to OLD / NEW), or two ``summary.json`` files. Each pair is compared
recursively: dicts key by key, lists element by element, numbers within ``--tol`` (absolute or
relative to the larger magnitude; 0 by default: equal), NaN equal to NaN, everything else by ``==``.
Keys whose name matches an ``--ignore`` pattern (``fnmatch``, on the key alone; repeatable) are
skipped at any depth; by default timing keys are: ``*seconds*``, ``steps_per_second``, ``wall_*``.

Prints ``identical`` or every difference (``path: old -> new``, missing and extra keys) per pair,
and the files present on one side only. Exit status 0 when every pair is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from pathlib import Path

DEFAULT_IGNORE = ("*seconds*", "steps_per_second", "wall_*")
MISSING = object()


def _short(v, limit: int = 120) -> str:
    s = "<missing>" if v is MISSING else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _numbers_equal(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return tol > 0 and abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def diff(old, new, *, tol: float = 0.0, ignore=DEFAULT_IGNORE, path: str = "") -> list[str]:
    """Differences between two JSON values, one line each (empty when equal); see the module doc."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if any(fnmatch.fnmatchcase(str(k), p) for p in ignore):
                continue
            sub = f"{path}.{k}" if path else str(k)
            if k not in new:
                out.append(f"{sub}: {_short(old[k])} -> <missing>")
            elif k not in old:
                out.append(f"{sub}: <missing> -> {_short(new[k])}")
            else:
                out += diff(old[k], new[k], tol=tol, ignore=ignore, path=sub)
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: list of {len(old)} -> list of {len(new)}: {_short(old)} -> {_short(new)}"]
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += diff(a, b, tol=tol, ignore=ignore, path=f"{path}[{i}]")
        return out
    numeric = (int, float)
    if (isinstance(old, numeric) and isinstance(new, numeric)
            and not isinstance(old, bool) and not isinstance(new, bool)):
        return [] if _numbers_equal(float(old), float(new), tol) else [f"{path}: {_short(old)} -> {_short(new)}"]
    return [] if old == new and type(old) is type(new) else [f"{path}: {_short(old)} -> {_short(new)}"]


def summaries(root: Path) -> dict[str, Path]:
    """``{relative directory: summary.json}`` below ``root`` (or ``root`` itself if it is a file)."""
    if root.is_file():
        return {".": root}
    return {str(p.parent.relative_to(root)): p for p in sorted(root.rglob("summary.json"))}


def compare(old_root: Path, new_root: Path, *, tol: float = 0.0, ignore=DEFAULT_IGNORE, out=None) -> bool:
    """Compare every paired summary; print the report to ``out`` (stdout); True when all are identical."""
    out = sys.stdout if out is None else out
    old, new = summaries(old_root), summaries(new_root)
    if old_root.is_file() or new_root.is_file():
        old, new = {".": next(iter(old.values()))}, {".": next(iter(new.values()))}
    same = True
    for rel in sorted(set(old) | set(new)):
        if rel not in new or rel not in old:
            print(f"{rel}: only in {'OLD' if rel in old else 'NEW'}", file=out)
            same = False
            continue
        lines = diff(json.loads(old[rel].read_text()), json.loads(new[rel].read_text()), tol=tol, ignore=ignore)
        if lines:
            same = False
            print(f"{rel}: {len(lines)} difference(s)", file=out)
            for line in lines:
                print(f"  {line}", file=out)
        else:
            print(f"{rel}: identical", file=out)
    if not old and not new:
        print("no summary.json found", file=out)
        same = False
    return same


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--tol", type=float, default=0.0,
                   help="numbers may differ by this much, absolute or relative to the larger (default 0)")
    p.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                   help="skip keys matching this fnmatch pattern, at any depth (repeatable)")
    p.add_argument("--no-default-ignores", action="store_true",
                   help=f"compare timing keys too (default ignores: {', '.join(DEFAULT_IGNORE)})")
    args = p.parse_args(argv)
    for root in (args.old, args.new):
        if not root.exists():
            p.error(f"{root} does not exist")
    ignore = tuple(args.ignore) + (() if args.no_default_ignores else DEFAULT_IGNORE)
    return 0 if compare(args.old, args.new, tol=args.tol, ignore=ignore) else 1


if __name__ == "__main__":
    sys.exit(main())
