"""The experiment registry. An experiment is a config dataclass (with presets) and a ``run``.

``run_experiment(name, config, out_dir)`` opens the run directory (resuming or refusing a
different run) and calls the experiment's ``run(config, run_dir) -> summary``. The CLI and the
notebooks call the same function.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Callable

from ..config import Config, ConfigError
from ..results import RunDir


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    config_cls: type[Config]
    run: Callable[[Config, RunDir], dict]
    description: str
    table: Callable[[dict], str] | None = None  # summary -> printable result table


_REGISTRY: dict[str, Experiment] = {}
_MODULES = ("sphere_train", "sphere_quadratic", "sphere_geometry", "szegedy", "goodfellow")


def register(name: str, config_cls: type[Config], description: str,
             table: Callable[[dict], str] | None = None):
    """Decorator registering ``run(config, run_dir) -> summary`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"experiment {name!r} registered twice")
        _REGISTRY[name] = Experiment(name, config_cls, fn, description, table)
        return fn

    return deco


def _load_all() -> None:
    for m in _MODULES:
        importlib.import_module(f"{__name__}.{m}")


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    _load_all()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}{hint} (see `spheres list`)")
    return _REGISTRY[name]


def make_config(name: str, preset: str = "quick", overrides: list[str] | dict | None = None,
                seed: int | None = None) -> Config:
    """The config of ``name`` at ``preset`` with ``overrides`` (``["k=v"]`` or a dict) and ``seed``."""
    cfg = get(name).config_cls.preset(preset)
    if overrides:
        cfg = cfg.override(overrides)
    if seed is not None:
        cfg = cfg.override({"seed": int(seed)})
    return cfg


def run_experiment(name: str, config: Config, out_dir: Path | str, *, force: bool = False) -> dict:
    """Open ``out_dir`` (resume if it holds this run) and run the experiment. Returns the summary."""
    exp = get(name)
    if not isinstance(config, exp.config_cls):
        raise ConfigError(f"{name} expects a {exp.config_cls.__name__}, got {type(config).__name__}")
    config.validate()
    config.preflight()
    run_dir = RunDir.open(out_dir, name, config, force=force)
    return exp.run(config, run_dir)
