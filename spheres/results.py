"""Run directories: one layout for every experiment (docs/design.md, "Contracts").

```
RUN/
  config.json      experiment name and the full config (what was asked)
  manifest.json    versions, devices, seed, git commit, timings (where it came from)
  metrics.jsonl    one JSON object per logged step
  *.npz            arrays (never pickle: loaded with allow_pickle=False)
  *.png            figures
  summary.json     the final numbers (written last: its presence means the run finished)
  ckpt/            orbax checkpoints of the training state
```

Every file is written atomically (temporary file in the same directory, then ``os.replace``).
Opening a directory that holds a run with a *different* config raises ``RunDirConflict`` unless
``force=True``; the same config resumes.

In a run over several processes (`spheres.distributed`) only process 0 (the writer) touches the
directory: the others get a `RunDir` whose writes do nothing and whose reads return what process 0
read, so the directory need not be on a shared filesystem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from . import distributed
from .run_files import (LOCK, RunDirConflict, RunDirLocked, RunFileError, _json_default,  # noqa: F401
                        _lock_owner, _pid_alive, acquire_lock, atomic_write_bytes, atomic_write_json,
                        clear_run, environment, git_commit, read_json, read_metrics_file, to_json,
                        update_json)


class RunDir:
    """A run directory. Create with ``RunDir.open(path, experiment, config, force=False)``.

    Holds the directory's lock (``.lock``) from `open` until `close`; every write records the file
    in the manifest's ``files`` list, which is all that ``force`` ever deletes. ``summary`` is the
    finished run's summary when `open` found one (else None); ``writer`` is False on the processes
    of a multi-process run other than process 0.
    """

    def __init__(self, path: Path, experiment: str, config: dict):
        self.path = Path(path)
        self.experiment = experiment
        self.config = config
        self.preset = "custom"       # the preset the run was started with (`set_origin`)
        self.overrides: list[str] = []
        self.config_changed = False  # reopened with different evaluation-only keys
        self.reevaluate = False      # recompute the summary even if the run finished
        self.summary: dict | None = None   # summary.json as found by `open`
        self.shard: tuple[int, int] | None = None   # (K, N): this job runs members K, K+N, ...
        self.writer = True
        self._t0 = time.time()
        self._lock_held = False

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, experiment: str, config, *, force: bool = False,
             shard: tuple[int, int] | None = None) -> "RunDir":
        """Create ``path`` or reopen it to resume; take its lock (released by `close`).

        * empty or missing: create it and write ``config.json`` and ``manifest.json``;
        * holds the same experiment and config: resume (the manifest records the restart);
        * differs only in the config class's ``EVAL_ONLY`` keys: resume, record the change in the
          manifest (``config_changes``) and mark the run for re-evaluation (``config_changed``);
        * holds something else: raise ``RunDirConflict`` unless ``force``, which first checks and
          then deletes what the manifest's ``files`` list says the run wrote (sub-runs included);
          other files stay. A non-empty directory that holds no run is refused even with ``force``.

        With ``shard=(K, N)`` (one job of a sweep spread over N jobs) the directory is shared with
        the other shards: no lock is taken (each member takes its own) and the manifest records the
        shard count. On a multi-process run process 0 opens the directory and the others receive
        the outcome (its error, re-raised, or the finished summary).
        """
        path = Path(path)
        opened = {}

        def open_here():
            rd = opened["rd"] = cls._open_here(path, experiment, config, force=force, shard=shard)
            return {"config_changed": rd.config_changed, "summary": rd.summary}

        outcome = distributed.on_writer(open_here)
        if "rd" in opened:
            return opened["rd"]
        rd = cls(path, experiment, json.loads(to_json(config)))
        rd.writer, rd.shard = False, shard
        rd.config_changed, rd.summary = outcome["config_changed"], outcome["summary"]
        return rd

    @classmethod
    def _open_here(cls, path: Path, experiment: str, config, *, force: bool,
                   shard: tuple[int, int] | None) -> "RunDir":
        cfg = json.loads(to_json(config))
        record = {"experiment": experiment, "config": cfg}
        defaults = _field_defaults(config)
        eval_only = set(getattr(config, "EVAL_ONLY", ()))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create run directory {path}: {e.strerror}") from None
        if not os.access(path, os.W_OK):
            raise PermissionError(f"run directory {path} is not writable")
        rd = cls(path, experiment, cfg)
        rd.shard = shard
        if shard is None:
            rd._acquire_lock()
        try:
            changes = rd._check_existing(record, defaults, eval_only, force)
            manifest_path = path / "manifest.json"
            if not manifest_path.exists():
                atomic_write_json(manifest_path, {"experiment": experiment, "created": _now(), "starts": []})

            def start(manifest):
                manifest["environment"] = environment()
                manifest.setdefault("starts", []).append(_now() + (f" shard {shard[0]}/{shard[1]}"
                                                                    if shard else ""))
                manifest["seed"] = cfg.get("seed")
                if shard:
                    manifest["shards"] = shard[1]
                files = manifest.setdefault("files", [])
                for name in ("config.json", "manifest.json"):
                    if name not in files:
                        files.append(name)
                if changes:
                    manifest.setdefault("config_changes", []).append({"at": _now(), "changes": changes})

            rd.config_changed = bool(changes)
            atomic_write_json(path / "config.json", record)
            update_json(manifest_path, start)
            _register_in_parent(path)
            done = path / "summary.json"
            rd.summary = read_json(done, dict) if done.exists() else None
        except BaseException:
            rd.close()
            raise
        return rd

    def _check_existing(self, record: dict, defaults: dict, eval_only: set, force: bool) -> dict:
        """Compare with the run already in the directory; returns the evaluation-only changes."""
        path, cfg = self.path, record["config"]
        existing = path / "config.json"
        if existing.exists():
            try:
                old = read_json(existing, dict)
            except RunFileError as e:
                old, why = None, str(e)
            else:
                why = ""
            if isinstance(old, dict) and _same_run(old, record, defaults):
                return {}
            if isinstance(old, dict) and old.get("experiment") == record["experiment"] and \
                    isinstance(old.get("config"), dict):
                ocfg = {**defaults, **old["config"]}
                diff = {k for k in set(ocfg) | set(cfg) if ocfg.get(k) != cfg.get(k)}
                if diff and diff <= eval_only:
                    return {k: [ocfg.get(k), cfg.get(k)] for k in sorted(diff)}
            if not force:
                if old is None:
                    raise RunDirConflict(f"{why}; choose another --out, or pass --force to replace "
                                         f"the run")
                diff = _config_diff(old.get("config", {}) if isinstance(old.get("config"), dict)
                                    else {}, cfg)
                raise RunDirConflict(
                    f"{path} already holds a different run (experiment {old.get('experiment')!r}"
                    f"{'; differs in ' + diff if diff else ''}); "
                    f"choose another --out or pass --force to replace it")
            clear_run(path)
        elif any(p for p in path.iterdir() if not p.name.startswith(".")
                 and not (self.shard and p.is_dir())):     # shards may have started members
            raise RunDirConflict(f"{path} is not empty and holds no run (no config.json); choose "
                                 f"another --out (--force only replaces a run, never other files)")
        return {}

    # -- the lock ----------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        self._lock_held = acquire_lock(self.path)

    def close(self) -> None:
        """Release the directory's lock (idempotent)."""
        if self._lock_held:
            with contextlib.suppress(FileNotFoundError):
                (self.path / LOCK).unlink()
            self._lock_held = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing -----------------------------------------------------------------------------
    def set_origin(self, preset: str, overrides: list[str]) -> None:
        """Record how the run was asked for: its preset and ``key=value`` overrides (manifest)."""
        self.preset, self.overrides = preset, list(overrides)
        self.update_manifest(preset=preset, overrides=self.overrides)

    def update_manifest(self, **fields) -> None:
        if self.writer:
            update_json(self.path / "manifest.json", lambda m: m.update(fields))

    def record_file(self, name: str) -> None:
        """Add ``name`` (relative to the run directory) to the manifest's written-files list."""
        p = self.path / "manifest.json"
        if not self.writer or not p.exists():
            return
        update_json(p, lambda m: m.setdefault("files", []).append(name)
                    if name not in m.setdefault("files", []) else None)

    def log_metrics(self, record: dict) -> None:
        """Append one JSON line to ``metrics.jsonl`` (flushed and fsynced)."""
        if not self.writer:
            return
        p = self.path / "metrics.jsonl"
        if not p.exists():
            self.record_file("metrics.jsonl")
        with open(p, "a") as f:
            f.write(to_json(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        """The records of ``metrics.jsonl``. A corrupt line raises `RunFileError` naming the file
        and line; only a torn last line (no trailing newline: a kill mid-write) is dropped, with a
        warning."""
        return distributed.on_writer(read_metrics_file, self.path / "metrics.jsonl")

    def read_json(self, name: str) -> dict | list | None:
        """The JSON value in ``name.json`` of the run directory, or None if there is none."""
        p = self.path / f"{name}.json"
        return distributed.on_writer(lambda: read_json(p) if p.exists() else None)

    def truncate_metrics(self, max_step: int) -> None:
        """Keep only records with ``step <= max_step`` (used when resuming from a checkpoint)."""
        p = self.path / "metrics.jsonl"
        if not self.writer or not p.exists():
            return
        recs = [r for r in read_metrics_file(p) if r.get("step", -1) <= max_step]
        atomic_write_bytes(p, "".join(to_json(r, sort_keys=True) + "\n" for r in recs).encode())

    def save_arrays(self, name: str, **arrays) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        p = self.path / f"{name}.npz"
        if not self.writer:
            return p
        self.record_file(p.name)
        atomic_write_bytes(p, buf.getvalue())
        return p

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        p = self.path / f"{name}.npz"
        source = p
        if distributed.process_count() > 1:     # process 0's bytes
            if not distributed.on_writer(p.is_file):
                raise FileNotFoundError(f"{p}: no such file")
            source = io.BytesIO(distributed.broadcast_bytes(p.read_bytes() if self.writer else None))
        try:
            with np.load(source, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise
        except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, OSError: all "corrupt"
            raise RunFileError(f"{p}: unreadable ({type(e).__name__}: {e}); delete it to recompute "
                               f"it") from None

    def save_figure(self, name: str, fig) -> Path:
        p = self.path / f"{name}.png"
        if not self.writer:
            return p
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        self.record_file(p.name)
        atomic_write_bytes(p, buf.getvalue())
        return p

    def save_json(self, name: str, obj) -> Path:
        p = self.path / f"{name}.json"
        if not self.writer:
            return p
        self.record_file(p.name)
        atomic_write_json(p, obj)
        return p

    def write_summary(self, summary: dict) -> None:
        """Write ``summary.json`` (last) and the run's wall time into the manifest."""
        self.summary = summary
        if not self.writer:
            return
        self.record_file("summary.json")
        self.update_manifest(finished=_now(), wall_seconds_last_start=round(time.time() - self._t0, 3))
        atomic_write_json(self.path / "summary.json", summary)

    @property
    def ckpt_dir(self) -> Path:
        self.record_file("ckpt")
        return self.path / "ckpt"


def _register_in_parent(path: Path) -> None:
    """A run created inside another run (a sweep's member) is listed in the parent's files."""
    parent = path.parent
    pm = parent / "manifest.json"
    if (parent / "config.json").is_file() and pm.is_file():
        with contextlib.suppress(RunFileError, OSError):
            update_json(pm, lambda m: m.setdefault("files", []).append(path.name + "/")
                        if path.name + "/" not in m.setdefault("files", []) else None)


def _field_defaults(config) -> dict:
    """JSON form of a config dataclass's field defaults (``{}`` for a plain dict config)."""
    if not dataclasses.is_dataclass(config):
        return {}
    out = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            out[f.name] = json.loads(to_json(f.default))
    return out


def _same_run(old: dict, new: dict, defaults: dict) -> bool:
    """Same experiment and config, where keys missing from ``old`` count only if the new value is
    the field's default (so a run started before a field existed resumes under a newer version)."""
    if old.get("experiment") != new["experiment"]:
        return False
    o, n = old.get("config", {}), new["config"]
    if set(o) - set(n):
        return False
    return all(o[k] == v if k in o else (k in defaults and defaults[k] == v) for k, v in n.items())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _config_diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return ", ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else "")


def refuse_run_file(path: Path | str) -> None:
    """Raise ``FileExistsError`` when ``path`` would be a file inside a run directory (a directory
    holding ``config.json``): reports and exports never write over a run's own files."""
    path = Path(path)
    for parent in (path.parent, *path.parent.parents):
        if (parent / "config.json").is_file() and (parent / "manifest.json").is_file():
            raise FileExistsError(f"{path} is inside the run directory {parent}; write the report "
                                  f"elsewhere (a run's own files are never overwritten)")
        if parent == parent.parent:
            break


def load_run(path: Path | str) -> dict:
    """Read a run directory: ``{"config", "manifest", "summary" (or None), "metrics"}``."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a run directory (no config.json)")
    summary = read_json(path / "summary.json", dict) if (path / "summary.json").exists() else None
    manifest = read_json(path / "manifest.json", dict) if (path / "manifest.json").exists() else {}
    config = read_json(path / "config.json", dict)
    if not isinstance(config.get("config", {}), dict) or not isinstance(config.get("experiment", ""), str):
        raise RunFileError(f"{path / 'config.json'}: expected {{\"experiment\": ..., \"config\": {{...}}}}; "
                           f"the file is corrupt")
    return {"config": config, "manifest": manifest, "summary": summary,
            "metrics": read_metrics_file(path / "metrics.jsonl")}
