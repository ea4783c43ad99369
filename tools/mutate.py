"""Mutation testing of one module at a time with cosmic-ray (``make mutate MODULE=theory/binomial.py``).

Why cosmic-ray and not mutmut 3: mutmut 3 forks the pytest process once per mutant after running the
suite in it, and JAX (multithreaded, with per-process jit caches) does not survive ``os.fork`` well:
a trace cached before the fork hides the mutant. cosmic-ray runs every mutant in a fresh pytest
subprocess, so every mutant is traced and compiled anew.

cosmic-ray writes each mutant to disk. So that the shared working tree is never touched, the
packages and tests are copied to a scratch directory ``.mutate/<module>/`` and mutated there; the
session database (``session.sqlite``) and a text report stay there too. The tests run per module are
the ones in TESTS below (the few files that exercise it), with ``-x`` so a mutant stops at its first
failing test; ``TESTS=...`` overrides them. The last line printed is the table row for
docs/mutation.md: killed / survived / timeout / incompetent / run / skipped operators / pending.

    python tools/mutate.py theory/binomial.py            # one module
    python tools/mutate.py --list                        # the modules in scope and their tests
    python tools/mutate.py --survivors theory/binomial.py   # diffs of the surviving mutants
    python tools/mutate.py --recheck theory/binomial.py     # survivors against the current tests
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutate"

# Module -> the tests that exercise it (kept small: each mutant reruns them).
TESTS: dict[str, list[str]] = {
    "attacks/pgd.py": ["tests/attacks/test_pgd_behaviour.py", "tests/attacks/test_projections.py",
                       "tests/attacks/test_attacks_closed_form.py", "tests/attacks/test_attacks_validation.py"],
    "attacks/fgsm.py": ["tests/attacks/test_attacks_closed_form.py", "tests/attacks/test_attacks_validation.py"],
    "attacks/_base.py": ["tests/attacks/test_pgd_behaviour.py", "tests/attacks/test_attacks_closed_form.py",
                         "tests/attacks/test_attacks_validation.py", "tests/attacks/test_attacks_underflow.py",
                         "tests/attacks/test_projections.py"],
    "attacks/sphere.py": ["tests/attacks/test_sphere_targeted_and_transfer.py", "tests/attacks/test_projections.py",
                          "tests/attacks/test_attacks_closed_form.py"],
    "attacks/lbfgsb.py": ["tests/attacks/test_lbfgsb_pieces.py", "tests/attacks/test_attacks_lbfgsb.py"],
    "attacks/lbfgs.py": ["tests/attacks/test_attacks_closed_form.py", "tests/attacks/test_attacks_validation.py",
                         "tests/attacks/test_attacks_lbfgsb.py"],
    "attacks/robust.py": ["tests/attacks/test_robust_accuracy.py", "tests/theory/test_binomial.py"],
    "attacks/transfer.py": ["tests/attacks/test_sphere_targeted_and_transfer.py", "tests/attacks/test_attacks_closed_form.py"],
    "attacks/apgd.py": ["tests/attacks/test_apgd.py"],
    "attacks/_pool.py": ["tests/attacks/test_attacks_pool.py"],
    "attacks/nearest.py": ["tests/attacks/test_attacks_closed_form.py", "tests/attacks/test_epsilons.py"],
    "attacks/search.py": ["tests/attacks/test_epsilons.py", "tests/attacks/test_attacks_closed_form.py",
                          "tests/attacks/test_attacks_validation.py"],
    "attacks/_validate.py": ["tests/attacks/test_attacks_validation.py", "tests/attacks/test_validate_unit.py"],
    "attacks/_model.py": ["tests/attacks/test_model_adapters.py"],
    "theory/binomial.py": ["tests/theory/test_binomial.py", "tests/theory/test_mc_interval_and_tilt.py"],
    "theory/error_rate.py": ["tests/theory/test_theory_error_rate.py", "tests/theory/test_mc_interval_and_tilt.py",
                             "tests/theory/test_theory_invariances.py"],
    "theory/bounds.py": ["tests/theory/test_theory_bounds.py"],
    "theory/simplified.py": ["tests/theory/test_theory_simplified.py", "tests/theory/test_simplified_optimal.py"],
    "theory/simplified_optimal.py": ["tests/theory/test_simplified_optimal.py"],
    "theory/quadratic.py": ["tests/theory/test_theory_quadratic.py", "tests/theory/test_mc_interval_and_tilt.py"],
    "theory/linear.py": ["tests/theory/test_theory_linear.py"],
    "theory/lipschitz.py": ["tests/theory/test_theory_lipschitz.py"],
    "theory/threshold.py": ["tests/theory/test_simplified_optimal.py"],
    "theory/nearest_error.py": ["tests/theory/test_exact_nearest.py"],
    "theory/certify.py": ["tests/theory/test_certify.py"],
    "theory/_common.py": ["tests/theory/test_common_validation.py", "tests/theory/test_theory_error_rate.py",
                          "tests/theory/test_theory_bounds.py"],
    "spheres/sphere/evaluate.py": ["tests/sphere/test_sphere_evaluate.py"],
    "spheres/sphere/data.py": ["tests/sphere/test_sphere_data.py"],
    "spheres/images/data.py": ["tests/images/test_image_data.py"],
    "spheres/images/evaluate.py": ["tests/images/test_image_evaluate.py",
                                   "tests/images/test_image_train.py::test_padded_chunks_pad_the_last_chunk_with_its_final_row"],
}

# Operator variants left out to keep a module within minutes: replacing an arithmetic operator by a
# bitwise, shift, floor-division or modulo operator (on floats and JAX arrays these raise or give
# nonsense that any numeric test kills), and `==`/`<` by `is`/`is not`. Each source operator is still
# mutated into its arithmetic and comparison alternatives (+ -> -, *, /, **; < -> <=, >, >=, ==, !=),
# numbers, `not`, `and`/`or`, unary signs, break/continue.
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_\w+_(BitOr|BitAnd|BitXor|LShift|RShift|FloorDiv|Mod)$",
    r"core/ReplaceBinaryOperator_(BitOr|BitAnd|BitXor|LShift|RShift|FloorDiv|Mod)_(BitOr|BitAnd|BitXor|LShift|RShift)$",
    r"core/ReplaceComparisonOperator_\w+_(Is|IsNot)$",
    r"core/ReplaceComparisonOperator_(Is|IsNot)_\w+$",
]

COPY = ["attacks", "theory", "spheres", "tests", "pyproject.toml"]


def scratch_for(module: str) -> Path:
    return SCRATCH / module.replace("/", "__").removesuffix(".py")


def fresh_copy(work: Path) -> None:
    """``work`` emptied and filled with a copy of the tree's packages and tests (`COPY`)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, work / name)


def scratch_env(work: Path) -> dict:
    """The environment the tests of a scratch copy run in: its packages first, CPU, one shared
    compilation cache for all mutants."""
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(work),
                JAX_COMPILATION_CACHE_DIR=str(SCRATCH / "jax-cache"),
                XLA_FLAGS=os.environ.get("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false"))


PRISTINE = "pristine-module.py"


def restore_pristine(work: Path, module: str) -> bool:
    """Put the run's unmutated module back into its scratch copy; True if it had been left mutated.

    cosmic-ray restores the module after each mutant, but a run killed mid-mutant leaves that edit
    in place, and a resumed run would then test every later mutant on top of it (a compound mutant:
    spurious kills). `prepare` keeps the unmutated module as ``PRISTINE`` for this."""
    keep = work / PRISTINE
    if not keep.exists():
        return False
    changed = keep.read_text() != (work / module).read_text()
    if changed:
        shutil.copyfile(keep, work / module)
    return changed


def prepare(module: str, tests: list[str], timeout: float) -> Path:
    work = scratch_for(module)
    fresh_copy(work)
    shutil.copyfile(work / module, work / PRISTINE)
    python = ROOT / ".venv" / "bin" / "python"
    # -p no:cacheprovider: the JAX compile cache comes from JAX_COMPILATION_CACHE_DIR below instead.
    cmd = f"{python} -m pytest -x -q -p no:cacheprovider -o addopts='-m \"not slow and not full_data\"' " + " ".join(tests)
    (work / "cosmic-ray.toml").write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(cmd)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = {json.dumps(EXCLUDED_OPERATORS)}\n"
    )
    return work


def run(cmd: list[str], work: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=work, env=env, text=True, capture_output=True)


def summarize(work: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    counts = dict(killed=0, survived=0, timeout=0, incompetent=0, pending=0, skipped=0)
    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            r = results.get(item.job_id)
            if r is None:
                counts["pending"] += 1
            elif r.worker_outcome == WorkerOutcome.SKIPPED:
                counts["pending" if r.output == "sampled-out" else "skipped"] += 1
            elif r.worker_outcome != WorkerOutcome.NORMAL:
                counts["incompetent"] += 1
            elif r.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
            elif r.test_outcome == TestOutcome.KILLED:
                # cosmic-ray records a run past the timeout as killed with output "timeout"
                counts["timeout" if (r.output or "").strip() == "timeout" else "killed"] += 1
            else:
                counts["incompetent"] += 1
    return counts


def sample(work: Path, k: int, seed: int = 0) -> None:
    """Keep ``k`` random pending mutants; mark the others as not run (outcome "sampled-out")."""
    import random

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
        pending = [i.job_id for i in db.pending_work_items]
        keep = set(random.Random(seed).sample(pending, min(k, len(pending))))
        for job in pending:
            if job not in keep:
                db.set_result(job, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="sampled-out"))


def survivors(work: Path) -> str:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    out = []
    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            r = results.get(item.job_id)
            if r and r.worker_outcome == WorkerOutcome.NORMAL and r.test_outcome == TestOutcome.SURVIVED:
                out.append(f"--- {item.job_id} {item.mutations[0].operator_name} "
                           f"line {item.mutations[0].start_pos[0]}\n{r.diff}")
    return "\n".join(out)


def apply_mutation(source: str, diff: str, line: int) -> str | None:
    """``source`` with a cosmic-ray mutant's edit made again: the diff's removed lines replaced by its
    added lines, at the occurrence nearest the original ``line``, matched without regard to
    indentation and re-indented to today's (the module may have changed around them since the run,
    so the diff's context, line numbers and indentation are not relied on). None if the removed
    lines are no longer in ``source``."""
    body = [x for x in diff.splitlines() if not x.startswith(("---", "+++"))]
    old = [x[1:] for x in body if x.startswith("-")]
    new = [x[1:] for x in body if x.startswith("+")]
    # a mutant of the last line also "changes" the empty string after the final newline
    while len(old) > 1 and len(new) > 1 and old[-1] == new[-1] == "":
        old, new = old[:-1], new[:-1]
    lines = source.splitlines(keepends=True)
    plain = [x.strip() for x in lines]
    want = [x.strip() for x in old]
    hits = [i for i in range(len(plain) - len(want) + 1) if plain[i:i + len(want)] == want] if want else []
    if not hits:
        return None
    i = min(hits, key=lambda h: abs(h + 1 - line))
    # the lines may have been re-indented since (moved into a block): keep today's indentation
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    shift = len(indent) - (len(old[0]) - len(old[0].lstrip()))
    fixed = [(" " * shift + x if shift >= 0 else x[-shift:]) if x.strip() else x for x in new]
    return "".join(lines[:i] + [x + "\n" for x in fixed] + lines[i + len(old):])


def incompetent_diff(module: str, item) -> str:
    """The diff of work item ``item``'s mutant of ``module``, made again with cosmic-ray's operator
    on the run's scratch copy of the module (left unmutated after each mutant)."""
    import difflib

    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    spec = item.mutations[0]
    operator = cosmic_ray.plugins.get_operator(spec.operator_name)(**(spec.operator_args or {}))
    work = scratch_for(module)
    source = (work / PRISTINE if (work / PRISTINE).exists() else work / module).read_text()
    mutated = mutate_code(source, operator, spec.occurrence)
    if mutated is None:
        return ""
    return "\n".join(difflib.unified_diff(source.split("\n"), mutated.split("\n"), "a/" + module, "b/" + module,
                                          lineterm=""))


def recheck(module: str, tests: list[str], timeout: float) -> tuple[int, int, str]:
    """Rerun the survivors of a finished run against the tests of the working tree as it is now.

    Each surviving mutant's edit is made again (`apply_mutation`) in a fresh scratch copy of the
    current tree, ``.mutate/<module>-recheck/``, the module's test files run, and the source restored.
    Returns ``(killed, still_surviving, report)``; the report lists the mutants still surviving,
    which are equivalent or need a test.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    with use_db(str(scratch_for(module) / "session.sqlite"), WorkDB.Mode.open) as db:
        results = dict(db.results)
        found = [(item, results[item.job_id].diff) for item in db.work_items
                 if item.job_id in results and results[item.job_id].worker_outcome == WorkerOutcome.NORMAL
                 and results[item.job_id].test_outcome == TestOutcome.SURVIVED]
        # incompetent mutants (the worker ran no test: an interrupted run) are rerun too; cosmic-ray
        # stored no diff for them, so it is made again from the run's own unmutated copy
        found += [(item, incompetent_diff(module, item)) for item in db.work_items
                  if item.job_id in results and results[item.job_id].worker_outcome
                  not in (WorkerOutcome.NORMAL, WorkerOutcome.SKIPPED)]
    work = scratch_for(module).with_name(scratch_for(module).name + "-recheck")
    fresh_copy(work)
    env = scratch_env(work)
    python = str(ROOT / ".venv" / "bin" / "python")
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o",
           "addopts=-m 'not slow and not full_data'", *tests]
    original = (work / module).read_text()
    killed, left = 0, []
    for item, diff in found:
        label = f"{item.job_id} {item.mutations[0].operator_name} line {item.mutations[0].start_pos[0]}"
        mutated = apply_mutation(original, diff, item.mutations[0].start_pos[0])
        if mutated is None:
            left.append(f"--- {label} (its lines are no longer in the module: not rerun)\n{diff}")
            continue
        (work / module).write_text(mutated)
        try:
            r = subprocess.run(cmd, cwd=work, env=env, text=True, capture_output=True, timeout=timeout)
            dead = r.returncode != 0
        except subprocess.TimeoutExpired:
            dead = True
        finally:
            (work / module).write_text(original)
        if dead:
            killed += 1
        else:
            left.append(f"--- {label}\n{diff}")
    return killed, len(left), "\n".join(left)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("module", nargs="?")
    p.add_argument("--list", action="store_true")
    p.add_argument("--survivors", action="store_true", help="print the surviving mutants of a finished run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (pending mutants only)")
    p.add_argument("--sample", type=int, default=int(os.environ.get("MUTATE_SAMPLE", 0)),
                   help="run only this many mutants drawn at random (seed 0); the rest are reported "
                        "as not run. For a first look at a slow module, not for the committed table")
    p.add_argument("--recheck", action="store_true",
                   help="rerun the survivors of a finished run against the current tests")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("MUTATE_TIMEOUT", 240)))
    a = p.parse_args(argv)
    if a.list or not a.module:
        for m, t in TESTS.items():
            print(f"{m}: {' '.join(t)}")
        return 0 if a.list else 2
    module = a.module
    if a.survivors:
        print(survivors(scratch_for(module)))
        return 0
    tests = os.environ.get("TESTS", "").split() or TESTS.get(module)
    if not tests:
        print(f"no tests listed for {module}: add it to TESTS in tools/mutate.py or pass TESTS=...")
        return 2
    if a.recheck:
        killed, left, report = recheck(module, tests, a.timeout)
        (scratch_for(module) / "survivors-recheck.txt").write_text(report)
        print(report)
        print(f"recheck of {module}: {killed} killed by the current tests, {left} still surviving "
              f"(listed above and in {scratch_for(module) / 'survivors-recheck.txt'})")
        return 0
    work = scratch_for(module) if a.resume else prepare(module, tests, a.timeout)
    env = scratch_env(work)
    cr = str(ROOT / ".venv" / "bin" / "cosmic-ray")
    crf = str(ROOT / ".venv" / "bin" / "cr-filter-operators")
    steps = [[cr, "exec", "cosmic-ray.toml", "session.sqlite"]]
    if not a.resume:
        steps = [[cr, "init", "cosmic-ray.toml", "session.sqlite"],
                 [crf, "session.sqlite", "cosmic-ray.toml"]] + steps
    if a.resume and restore_pristine(work, module):
        print(f"restored {module} in {work}: an interrupted mutant had left its edit there")
    base = run(["sh", "-c", json.loads((work / "cosmic-ray.toml").read_text().split("test-command = ")[1]
                                       .split("\n")[0])], work, env)
    if base.returncode != 0:
        # on a resume too: a scratch copy left mutated by a killed run (older runs have no pristine
        # copy to restore) would make every remaining mutant a compound one
        print(base.stdout[-3000:], base.stderr[-3000:])
        print(f"baseline failed for {module}: the unmutated tests must pass first"
              + (" (on a resume: the scratch copy may hold an interrupted mutant's edit; start the "
                 "module again without --resume)" if a.resume else ""))
        return 1
    for step in steps:
        if step[1] == "exec" and a.sample and not a.resume:
            sample(work, a.sample)
        r = run(step, work, env)
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:])
            return 1
    c = summarize(work)
    (work / "survivors.txt").write_text(survivors(work))
    run_total = c["killed"] + c["survived"] + c["timeout"] + c["incompetent"]
    print(f"| {module} | {c['killed']} | {c['survived']} | {c['timeout']} | {c['incompetent']} | "
          f"{run_total} | {c['skipped']} | {c['pending']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
