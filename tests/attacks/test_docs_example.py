"""The "attack your own model" example of docs/attacks-api.md runs as written."""

from __future__ import annotations

import pathlib
import re

import matplotlib.figure

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "attacks-api.md"
MARKER = "<!-- attack-your-own-model -->"


def example_code() -> str:
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} lost its example marker"
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    assert match, "no python code block after the marker"
    return match.group(1)


def test_attack_your_own_model_example_runs(capsys):
    code = example_code()
    assert len([line for line in code.splitlines() if line.strip()]) <= 16     # short, as promised
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)           # noqa: S102 -- our own documentation
    result, report = namespace["result"], namespace["report"]
    assert result.success.shape == (2, 16) and result.x_adv.shape == (2, 16, 28, 28)
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0   # the model's bounds
    assert report.count == 16 and report.interval.shape == (2, 2)
    out = capsys.readouterr().out
    assert "robust accuracy: attack=apgd, norm=linf, n=16" in out
    assert isinstance(report.figure(), matplotlib.figure.Figure)
