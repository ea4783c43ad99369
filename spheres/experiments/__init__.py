"""The experiment registry: every experiment is one module of this package.

An experiment module holds a docstring with its command and expected result, a `Config` subclass
with presets ``quick`` / ``medium`` / ``paper``, a ``run(config, run_dir, *, progress)`` that
returns the summary, a ``table(summary)`` that returns `spheres.tables.Tables`, and ``PAPER``
values with ``paper_rows(summary)``. It registers itself with `register`. Modules whose names
start with ``_`` hold machinery shared by one kind of experiment (``_sphere``, ``_image``); every
other module of this package is loaded by `names` / `get`, so adding an experiment is adding a
file.

``run_experiment(name, out_dir, preset=..., overrides=..., seed=...)`` is the one entry point:
the CLI, the notebooks and the tests call it. It builds and validates the config, checks it
before any work (``preflight``), opens the run directory (resuming the same run, refusing a
different one), records the preset and overrides in the manifest, and runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from ..config import Config, ConfigError
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Tables


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``run(config, run_dir, progress=) -> summary``, ``table(summary)
    -> Tables``, ``paper_rows(summary) -> [PaperRow]``; ``paper`` is gilmer / szegedy / goodfellow;
    ``seed_rows(summaries) -> [PaperRow]`` compares the paper with several records of the same run
    that differ only in their seed (`spheres.report.seed_groups`)."""

    name: str
    config_cls: type[Config]
    run: Callable[..., dict]
    description: str
    table: Callable[[dict], Tables]
    paper_rows: Callable[[dict], list[PaperRow]] | None
    paper: str
    seed_rows: Callable[[list[dict]], list[PaperRow]] | None = None


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, config_cls: type[Config], description: str, *, table: Callable[[dict], Tables],
             paper_rows: Callable[[dict], list[PaperRow]] | None = None, paper: str = "",
             seed_rows: Callable[[list[dict]], list[PaperRow]] | None = None):
    """Decorator registering ``run(config, run_dir, *, progress) -> summary`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise ValueError(f"experiment {name!r} registered twice")
        _REGISTRY[name] = Experiment(name, config_cls, fn, description, table, paper_rows, paper, seed_rows)
        return fn

    return deco


def _load_all() -> None:
    for m in pkgutil.iter_modules(__path__):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


def names() -> list[str]:
    """Every experiment's name, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    """The experiment ``name``; a `ConfigError` with a "did you mean" hint for unknown names."""
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
        cfg = cfg.override({"seed": seed})
    return cfg


# Experiments that run over several processes: every read of their run directory goes through
# `RunDir` (process 0 reads, the others receive), so no process depends on a shared filesystem.
MULTI_PROCESS = frozenset({"sphere-quadratic", "sphere-relu", "sphere-quadratic-undersized",
                           "sphere-dimension-sweep", "sphere-error-vs-distance",
                           "sphere-quadratic-finite"})
# Sweeps of independent members that ``--shard K/N`` spreads over jobs (`_sweep`).
SHARDABLE = frozenset({"sphere-dimension-sweep", "sphere-error-vs-distance", "sphere-quadratic-finite"})


def check_launch(name: str, shard: tuple[int, int] | None = None) -> None:
    """Raise `ConfigError` when ``name`` cannot run over this run's processes or in shards."""
    from .. import distributed

    if distributed.process_count() > 1 and name not in MULTI_PROCESS:
        raise ConfigError(f"{name} runs on one process only; several processes run "
                          f"{', '.join(sorted(MULTI_PROCESS))}")
    if shard is not None and name not in SHARDABLE:
        raise ConfigError(f"--shard spreads the members of a sweep over jobs; {name} is not one "
                          f"(sweeps: {', '.join(sorted(SHARDABLE))})")


def run_experiment(name: str, out_dir: Path | str | Config, *legacy, preset: str = "quick",
                   overrides: list[str] | dict | None = None, seed: int | None = None,
                   config: Config | None = None, force: bool = False, progress: bool = True,
                   reevaluate: bool = False, shard: tuple[int, int] | None = None) -> dict:
    """Run ``name`` into ``out_dir`` and return its summary (see the module docstring).

    Either ``preset`` (+ ``overrides``, ``seed``) or a ready ``config``; the manifest records the
    preset (``custom`` for a config that matches no preset) and the overrides either way. The
    earlier form ``run_experiment(name, config, out_dir)`` still works, with a DeprecationWarning.

    A finished run (``summary.json`` present) is not recomputed: its summary is returned as it
    is, unless ``reevaluate`` or the config changed in evaluation-only keys (``EVAL_ONLY``), when
    the summary is recomputed from the final checkpoint. The run directory's lock is held until
    this returns or raises.

    ``shard=(K, N)`` (sweeps only, `SHARDABLE`) runs members K, K+N, ... and returns
    ``{"shard", "members"}`` instead of a summary; the run without ``shard`` merges the members.
    """
    if isinstance(out_dir, Config):
        import warnings

        warnings.warn("run_experiment(name, config, out_dir) is now run_experiment(name, out_dir, "
                      "config=config)", DeprecationWarning, stacklevel=2)
        if len(legacy) != 1:
            raise TypeError("run_experiment(name, config, out_dir): out_dir is missing")
        config, out_dir = out_dir, legacy[0]
    elif legacy:
        raise TypeError(f"run_experiment takes 2 positional arguments, got {2 + len(legacy)}")
    exp = get(name)
    check_launch(name, shard)
    if config is None:
        preset = exp.config_cls.canonical_preset(preset)
        config = make_config(name, preset, overrides, seed)
    elif not isinstance(config, exp.config_cls):
        raise ConfigError(f"{name} expects a {exp.config_cls.__name__}, got {type(config).__name__}")
    else:
        preset = exp.config_cls.preset_of(config)
    config.validate()
    config.check_resources()
    config.preflight()
    with RunDir.open(out_dir, name, config, force=force, shard=shard) as run_dir:
        if run_dir.summary is not None and not (reevaluate or run_dir.config_changed):
            return run_dir.summary if shard is None else {"shard": list(shard), "members": [],
                                                          "merged": True}
        run_dir.reevaluate = bool(reevaluate or run_dir.config_changed)
        run_dir.set_origin(preset, _overrides_record(overrides, seed))
        return exp.run(config, run_dir, progress=progress)


def _overrides_record(overrides, seed) -> list[str]:
    out = list(overrides.items()) if isinstance(overrides, dict) else list(overrides or [])
    out = [o if isinstance(o, str) else f"{o[0]}={o[1]}" for o in out]
    return out + ([f"seed={seed}"] if seed is not None else [])
