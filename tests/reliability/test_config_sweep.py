"""Bad values for every config key of every experiment: one line on stderr, exit 2, nothing
written; values that happen to be valid pass validation and the pre-flight checks (not run)."""

import dataclasses
import typing

import pytest

from spheres import experiments
from spheres.cli import main

INT_VALUES = ["-1", "0", str(10**30), "abc", "1.5", "inf", "1e400", "12345678901234567890123"]
FLOAT_VALUES = ["nan", "inf", "-inf", "1e300", "-1", "0", "abc"]
TUPLE_VALUES = ["", "a,b", "-1", "1e300,1", "nan"]
STR_VALUES = ["", "no-such-thing"]


def _values(typ) -> list[str]:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Literal:
        return ["no-such-choice", ""]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        inner = [a for a in args if a is not type(None)][0]
        return _values(inner) + (["/nonexistent/spheres-data"] if inner is str else [])
    if origin is tuple:
        return TUPLE_VALUES
    if typ is bool:
        return ["maybe", "2"]
    if typ is int:
        return INT_VALUES
    if typ is float:
        return FLOAT_VALUES
    return STR_VALUES


@pytest.mark.parametrize("name", experiments.names())
def test_every_bad_value_of_every_key(name, tmp_path, capsys):
    cls = experiments.get(name).config_cls
    hints = typing.get_type_hints(cls)
    checked = 0
    for f in dataclasses.fields(cls):
        for value in _values(hints[f.name]):
            setting = f"{f.name}={value}"
            try:
                cfg = experiments.make_config(name, "quick", [setting])
                cfg.validate()
                cfg.check_resources()
                cfg.preflight()
            except Exception as e:       # invalid: the CLI must say so in one line, write nothing
                assert isinstance(e, ValueError | OSError), (setting, repr(e))
                out = tmp_path / f"{f.name}-{checked}"
                code = main(["run", name, "--out", str(out), "--set", setting, "--no-progress"])
                err = capsys.readouterr().err
                lines = [l for l in err.strip().splitlines() if not l.startswith("spheres: ") or
                         l.startswith("spheres: error:")]
                assert code == 2, (setting, err)
                assert "Traceback" not in err and len(lines) == 1, (setting, err)
                assert lines[0].startswith("spheres: error:"), (setting, err)
                assert not out.exists(), setting
            checked += 1
    assert checked >= 2 * len(dataclasses.fields(cls))


@pytest.mark.parametrize("seed", ["12345678901234567890123", "-1", str(2**32)])
def test_bad_seed_flag_writes_nothing(seed, tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", "sphere-quadratic", "--out", str(out), "--seed", seed])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("spheres: error: seed must be") and not out.exists()


def test_ints_parse_exactly():
    from spheres.config import parse_int

    assert parse_int("4294967295") == 2**32 - 1
    assert parse_int("12345678901234567") == 12345678901234567
    assert parse_int("1e6") == 1_000_000 and parse_int("2.0") == 2
    for bad in ("1.5", "inf", "nan", "1e-3", "abc"):
        with pytest.raises(ValueError):
            parse_int(bad)


@pytest.mark.parametrize("setting,key", [("d=200000", "eval_chunk or d"),
                                         ("hidden=10000000", "eval_chunk or hidden"),
                                         ("attack_samples=100000000", "attack_samples")])
def test_memory_estimate_names_the_key_to_lower(setting, key, capsys, tmp_path):
    out = tmp_path / "r"
    code = main(["run", "sphere-quadratic", "--out", str(out), "--set", setting])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and f"lower {key}" in err[-1] and not out.exists(), err
