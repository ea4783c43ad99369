"""The layout rules, checked from the source: the import graph has no cycle, the library never
imports the experiments, attacks and theory never import spheres, no library code touches
matplotlib's global state, modules stay short, and docstrings carry no history."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spheres", "attacks", "theory")
# Files allowed over MAX_LINES, each with the reason its single concern needs the length.
MAX_LINES = 420       # "about 400": a module that needs more holds two concerns
LONG_FILES = {
    "theory.nearest_error": "one solver: the secular equations off and on the sphere share their "
                            "derivation, safeguards and hard cases",
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            rel = p.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str) -> set[str]:
    """Every project module ``module`` imports, at top level or inside functions."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(module, is_pkg, node.level, node.module) if node.level else node.module
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            # a submodule importing its own package (or a package importing itself) is not an edge
            if t and t != module and not module.startswith(t + "."):
                out.add(t)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_no_import_cycles():
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_check_can_fail():
    """The checker sees a cycle when there is one (the graph code is not vacuous)."""
    assert "spheres.sphere.models" in GRAPH["spheres.sphere.train"] or \
        "spheres.sphere.data" in GRAPH["spheres.sphere.train"]
    assert "spheres.experiments._sphere" in GRAPH["spheres.experiments.sphere_relu"]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if not m.startswith("spheres.experiments")
                                          and m != "spheres.cli" and m != "spheres.report"
                                          and m not in ("spheres",)))
def test_library_never_imports_the_experiments(module):
    bad = {t for t in GRAPH[module] if t.startswith("spheres.experiments")}
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.split(".")[0] in ("attacks", "theory")))
def test_attacks_and_theory_never_import_spheres(module):
    assert not {t for t in GRAPH[module] if t.split(".")[0] == "spheres"}, module
    if module.startswith("theory"):
        assert not {t for t in GRAPH[module] if t.startswith("attacks")}, module


def test_no_experiment_file_imports_another():
    exp = {m for m in GRAPH if m.startswith("spheres.experiments.")}
    for m in exp:
        others = {t for t in GRAPH[m] if t in exp and not t.rpartition(".")[2].startswith("_")}
        assert not others, f"{m} imports the experiment module(s) {others}: share through a _module"


def test_no_global_matplotlib_state_in_library_code():
    for m, p in MODULES.items():
        src = p.read_text()
        assert "matplotlib.use(" not in src, f"{p}: selects a matplotlib backend"
        assert not re.search(r"import matplotlib\.pyplot|from matplotlib import pyplot|\bplt\.", src), \
            f"{p}: uses pyplot (return a matplotlib.figure.Figure)"


def test_modules_are_short():
    for m, p in MODULES.items():
        n = len(p.read_text().splitlines())
        if m in LONG_FILES:
            continue
        assert n <= MAX_LINES, f"{p.relative_to(ROOT)} has {n} lines (> {MAX_LINES})"


HISTORY = re.compile(r"\bissue \d+|\b20\d\d-\d\d-\d\d\b|\bcommit [0-9a-f]{7,}\b", re.I)


def test_no_history_in_docstrings_and_comments():
    """Dates, commit hashes and issue numbers belong in commit messages and run records."""
    for m, p in MODULES.items():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            assert not HISTORY.search(line), f"{p.relative_to(ROOT)}:{i}: {line.strip()}"


def test_every_experiment_has_the_three_presets_paper_rows_and_a_docstring_command():
    from spheres import experiments
    from spheres.tables import Tables  # noqa: F401

    for name in experiments.names():
        exp = experiments.get(name)
        assert set(exp.config_cls.PRESETS) == {"quick", "medium", "paper"}, name
        assert all(exp.config_cls.COST.get(p) for p in exp.config_cls.PRESETS), name
        assert exp.paper in ("gilmer", "szegedy", "goodfellow") and exp.paper_rows is not None, name
        mod = __import__(exp.run.__module__, fromlist=["_"])
        assert f"spheres run {name}" in (mod.__doc__ or ""), f"{name}: its module docstring has no command"
        assert exp.config_cls.canonical_preset("full") == "paper"


def test_every_attack_and_theory_module_is_in_mutation_scope():
    """``make mutate-list`` covers all of attacks/ and theory/: a new module gets its test files in
    tools/mutate.py's TESTS (package ``__init__`` files only re-export), and every listed file exists
    (an entry may name one test of a file, ``file::test``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    modules = {f"{pkg}/{p.name}" for pkg in ("attacks", "theory") for p in (ROOT / pkg).glob("*.py")
               if p.name != "__init__.py"}
    assert modules - set(tool.TESTS) == set()
    for module, tests in tool.TESTS.items():
        assert (ROOT / module).is_file(), module
        assert tests and all((ROOT / t.split("::")[0]).is_file() for t in tests), (module, tests)
