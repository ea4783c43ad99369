"""tools/mutate.py's recheck: a surviving mutant's edit is made again on today's module, even when
the code around it has moved since the mutation run (so its diff's context no longer matches)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


DIFF = """--- mutation diff ---
--- a/attacks/m.py
+++ b/attacks/m.py
@@ -2,4 +2,4 @@
     x = f(x)
-    if n >= k:
+    if n < k:
         return x
     y = g(x)"""


def test_apply_mutation_replaces_the_nearest_occurrence_despite_moved_context():
    tool = _tool()
    src = "def f():\n    check(k)\n    if n >= k:\n        return x\n    out = []\n    if n >= k:\n        pass\n"
    # the run saw the line at 3; the context lines after it have changed since
    got = tool.apply_mutation(src, DIFF, 3)
    assert got == src.replace("    if n >= k:\n        return", "    if n < k:\n        return", 1)
    # nearer the second occurrence, that one changes instead
    assert tool.apply_mutation(src, DIFF, 6).splitlines()[5] == "    if n < k:"
    assert tool.apply_mutation(src, DIFF, 6).splitlines()[2] == "    if n >= k:"
    # lines gone from the module: nothing to rerun
    assert tool.apply_mutation("def f():\n    pass\n", DIFF, 3) is None


def test_apply_mutation_follows_a_line_moved_into_a_block():
    tool = _tool()
    diff = "--- a/m.py\n+++ b/m.py\n@@ -3,1 +3,1 @@\n-    n = check(n, minimum=1)\n+    n = check(n, minimum= 0)"
    src = "def f(n):\n    if n is not None:\n        n = check(n, minimum=1)\n    return n\n"
    assert tool.apply_mutation(src, diff, 3) == src.replace("minimum=1", "minimum= 0")


def test_resume_restores_a_module_left_mutated_by_an_interrupted_run(tmp_path):
    """A run killed mid-mutant leaves that mutant's edit in the scratch copy; a resume must put the
    unmutated module back (else every later mutant is tested on top of it: spurious kills)."""
    tool = _tool()
    module = tmp_path / "theory" / "m.py"
    module.parent.mkdir()
    module.write_text("def f(b):\n    return b >= 0\n")
    (tmp_path / tool.PRISTINE).write_text(module.read_text())
    assert tool.restore_pristine(tmp_path, "theory/m.py") is False          # nothing to restore
    module.write_text("def f(b):\n    return b > 0\n")                       # the interrupted mutant
    assert tool.restore_pristine(tmp_path, "theory/m.py") is True
    assert module.read_text() == "def f(b):\n    return b >= 0\n"
    assert tool.restore_pristine(tmp_path / "theory", "m.py") is False       # no pristine copy kept


def test_apply_mutation_of_the_last_line_of_a_file():
    """cosmic-ray's diff of a module's last line also lists the empty string after the final newline."""
    tool = _tool()
    source = "x = 1\nCHUNK = 12\n"
    diff = ("--- mutation diff ---\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n x = 1\n-CHUNK = 12\n-\n"
            "+CHUNK = 11\n+")
    assert tool.apply_mutation(source, diff, 2) == "x = 1\nCHUNK = 11\n"
