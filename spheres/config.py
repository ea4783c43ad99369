"""Experiment configs: frozen dataclasses, named presets, ``key=value`` overrides.

Only experiment drivers read configs; models, attacks and theory take explicit arguments.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad preset, override key or value. The message says what was wrong and how to fix it."""


def _parse_value(name: str, text: str, typ) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        if len(non_none) == 1:
            return _parse_value(name, text, non_none[0])
    if origin is tuple:
        elem = args[0] if args else str
        parts = [p for p in text.replace(" ", "").split(",") if p]
        return tuple(_parse_value(name, p, elem) for p in parts)
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"--set {name}={text}: must be one of {', '.join(map(str, args))}")
        return text
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            f = float(text)
            if f != int(f):
                raise ValueError
            return int(f)
        if typ is float:
            return float(text)
        if typ is str:
            return text
    except ValueError:
        raise ConfigError(f"--set {name}={text}: expected a value of type {typ.__name__}") from None
    raise ConfigError(f"--set {name}: cannot parse values of type {typ}")


PRESET_NAMES = ("quick", "medium", "paper")
PRESET_ALIASES = {"full": "paper"}   # the image experiments' former name of their paper scale


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of experiment configs. Subclasses declare fields, ``PRESETS`` and ``validate``.

    Every experiment has the presets ``quick`` (a laptop CPU in minutes), ``medium`` and ``paper``
    (the paper's scale); ``full`` is accepted as an alias of ``paper``.
    """

    PRESETS: typing.ClassVar[dict[str, dict]] = {}
    COST: typing.ClassVar[dict[str, str]] = {}

    @classmethod
    def canonical_preset(cls, name: str) -> str:
        """``name`` with aliases resolved (``full`` -> ``paper``); an unknown name is a ConfigError."""
        name = PRESET_ALIASES.get(name, name)
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(cls.PRESETS)} "
                              f"(full is an alias of paper)")
        return name

    @classmethod
    def preset(cls, name: str = "quick") -> "Config":
        cfg = cls(**cls.PRESETS[cls.canonical_preset(name)])
        cfg.validate()
        return cfg

    @classmethod
    def preset_of(cls, config: "Config") -> str:
        """The preset whose config equals ``config`` apart from the seed, else ``custom``."""
        for name in cls.PRESETS:
            if dataclasses.replace(cls(**cls.PRESETS[name]), seed=getattr(config, "seed", 0)) == config:
                return name
        return "custom"

    def override(self, assignments: list[str] | dict[str, Any]) -> "Config":
        """Apply ``["key=value", ...]`` (strings parsed by the field's type) or a dict of values."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self))
        changes = {}
        items = assignments.items() if isinstance(assignments, dict) else None
        if items is None:
            items = []
            for a in assignments:
                if "=" not in a:
                    raise ConfigError(f"--set {a!r}: expected key=value")
                k, v = a.split("=", 1)
                items.append((k.strip(), v.strip()))
        for k, v in items:
            if k not in fields:
                import difflib

                close = difflib.get_close_matches(k, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
                raise ConfigError(f"unknown config key {k!r} for {type(self).__name__}{hint}")
            changes[k] = _parse_value(k, v, hints[k]) if isinstance(v, str) and hints[k] is not str else v
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:  # pragma: no cover - subclasses extend
        pass

    def preflight(self) -> None:
        """Check what the run needs from outside (e.g. data files) BEFORE its run directory is
        created, so a missing input leaves nothing behind. Raise with a fix-it message."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def require(cond: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``cond``."""
    if not cond:
        raise ConfigError(message)
