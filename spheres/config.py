"""Experiment configs: frozen dataclasses, named presets, ``key=value`` overrides.

Only experiment drivers read configs; models, attacks and theory take explicit arguments.
"""

from __future__ import annotations

import dataclasses
import math
import os
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
            return parse_int(text)
        if typ is float:
            f = float(text)
            if not math.isfinite(f):
                raise ConfigError(f"--set {name}={text}: must be a finite number")
            return f
        if typ is str:
            return text
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"--set {name}={text}: expected a value of type {typ.__name__}") from None
    raise ConfigError(f"--set {name}: cannot parse values of type {typ}")


def parse_int(text: str) -> int:
    """``text`` as an exact integer: ``12345678901234567`` stays exact; ``1e6`` and ``2.0`` are
    accepted only because they are exactly integral (read through `decimal.Decimal`, never a float).
    Raises ``ValueError`` otherwise."""
    import decimal

    text = text.strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        d = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(text) from None
    if not d.is_finite() or d != d.to_integral_value() or abs(d) > MAX_INT:
        raise ValueError(text)
    return int(d)


MAX_INT = 2**53          # no count, size or step of any experiment is near this; 10**30 is a typo
MAX_FLOAT = 1e6          # no radius, rate, step size or ε of any experiment is near this
MAX_SEED = 2**32         # jax.random.key reads seeds as 32-bit words; larger ones would alias


def _check_value(name: str, value, typ) -> None:
    """Generic checks of one field: floats finite and at most MAX_FLOAT in size, ints at most
    MAX_INT, the seed in [0, 2**32)."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if value is None:
        return
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None):
                _check_value(name, value, a)
        return
    if origin is tuple:
        for v in value:
            _check_value(name, v, args[0] if args else str)
        return
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        require(math.isfinite(value), f"{name} must be a finite number (got {value})")
        require(abs(value) <= MAX_FLOAT, f"{name} = {value:g} is out of range (|{name}| <= {MAX_FLOAT:g})")
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        if name == "seed":
            require(0 <= value < MAX_SEED, f"seed must be in [0, 2**32) (got {value})")
        require(abs(value) <= MAX_INT, f"{name} = {value} is out of range (|{name}| <= 2**53)")


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
    # Keys that change only how a finished run is evaluated: a run directory reopened with a config
    # that differs only in these re-evaluates from the final checkpoint instead of refusing.
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ()

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
        cfg.check_values()
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
        cfg.check_values()
        cfg.validate()
        return cfg

    def validate(self) -> None:  # pragma: no cover - subclasses extend
        pass

    def check_values(self) -> None:
        """The checks every field gets from its type (`_check_value`): finite, in-range numbers."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_value(f.name, getattr(self, f.name), hints.get(f.name, f.type))

    def memory_estimate(self) -> dict[str, int]:
        """Bytes of the largest arrays the run allocates, keyed by the config key to lower."""
        return {}

    def check_resources(self, fraction: float | None = None) -> None:
        """Refuse a config whose largest arrays (`memory_estimate`) exceed ``fraction`` of the
        physical memory (default ``$SPHERES_MEMORY_FRACTION`` or 0.5), naming the key to lower."""
        est = self.memory_estimate()
        if not est:
            return
        if fraction is None:
            fraction = float(os.environ.get("SPHERES_MEMORY_FRACTION", "0.5"))
        limit = fraction * physical_memory()
        total = sum(est.values())
        if total > limit:
            key = max(est, key=est.get)
            raise ConfigError(
                f"the run would need about {total / 2**30:.3g} GiB (largest: {key}, "
                f"{est[key] / 2**30:.3g} GiB), more than {fraction:g} of this machine's "
                f"{physical_memory() / 2**30:.3g} GiB; lower {key} (or set SPHERES_MEMORY_FRACTION)")

    def preflight(self) -> None:
        """Check what the run needs from outside (e.g. data files) BEFORE its run directory is
        created, so a missing input leaves nothing behind. Raise with a fix-it message."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def mlp_memory_estimate(dims: tuple[int, ...], width_key: str, *, train_size: int = 0,
                        **rows: int) -> dict[str, int]:
    """Float32 bytes of an MLP run's largest arrays, keyed by the config key to lower: parameters
    (×4: Adam's two moments and the gradient), ``rows[k]`` rows of input plus widest activation for
    each key ``k`` (e.g. ``eval_chunk=3 * chunk``), and a fixed training set."""
    params = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    d, width = dims[0], max(dims[1:])
    row = "d" if d >= width else width_key
    out = {("d" if params <= 10 * d else width_key): 16 * params, "train_size": 4 * train_size * d}
    out.update({f"{k} or {row}": 4 * n * (d + width) for k, n in rows.items() if n})
    return out


def physical_memory() -> int:
    """Physical memory in bytes (``sysconf``; 16 GiB if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 16 * 2**30


def require(cond: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``cond``."""
    if not cond:
        raise ConfigError(message)
