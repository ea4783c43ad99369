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
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class RunDirConflict(FileExistsError):
    """The directory already holds a different run."""


def _json_default(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__array__"):
        return np.asarray(o).tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj, **kw) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True, **kw)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path | str, obj) -> None:
    atomic_write_bytes(path, (to_json(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path | str):
    with open(path) as f:
        return json.load(f)


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        if out.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Versions and devices: where a result came from."""
    import flax
    import jax
    import optax
    import scipy

    try:
        from importlib.metadata import version
        orbax_version = version("orbax-checkpoint")
    except Exception:  # pragma: no cover
        orbax_version = None
    devs = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.node(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "orbax_checkpoint": orbax_version,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devs], "device_count": len(devs),
        "device_kind": devs[0].device_kind,
        "process_count": jax.process_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": git_commit(),
    }


class RunDir:
    """A run directory. Create with ``RunDir.open(path, experiment, config, force=False)``."""

    def __init__(self, path: Path, experiment: str, config: dict):
        self.path = Path(path)
        self.experiment = experiment
        self.config = config
        self.preset = "custom"       # the preset the run was started with (`set_origin`)
        self.overrides: list[str] = []
        self._t0 = time.time()

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, experiment: str, config, *, force: bool = False) -> "RunDir":
        """Create ``path`` or reopen it to resume.

        * empty or missing: create it and write ``config.json`` and ``manifest.json``;
        * holds the same experiment and config: resume (the manifest records the restart);
        * holds something else: raise ``RunDirConflict`` unless ``force``, which clears the
          run's files (``config.json``, ``manifest.json``, metrics, arrays, figures, summary, ckpt).
        """
        path = Path(path)
        cfg = json.loads(to_json(config))
        record = {"experiment": experiment, "config": cfg}
        defaults = _field_defaults(config)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create run directory {path}: {e.strerror}") from None
        if not os.access(path, os.W_OK):
            raise PermissionError(f"run directory {path} is not writable")
        existing = path / "config.json"
        if existing.exists():
            try:
                old = read_json(existing)
            except (OSError, ValueError):
                old = None
            if isinstance(old, dict) and _same_run(old, record, defaults):
                old = record  # written by an older version: fields added since are at their defaults
            if old != record:
                if not force:
                    what = (f"experiment {old.get('experiment')!r}" if isinstance(old, dict)
                            else "an unreadable config.json")
                    diff = _config_diff(old.get("config", {}) if isinstance(old, dict) else {}, cfg)
                    raise RunDirConflict(
                        f"{path} already holds a different run ({what}{'; differs in ' + diff if diff else ''}); "
                        f"choose another --out or pass --force to replace it")
                _clear_run(path)
        elif any(p for p in path.iterdir() if not p.name.startswith(".")):
            if not force:
                raise RunDirConflict(f"{path} is not empty and holds no run; choose another --out "
                                     f"or pass --force to write into it anyway")
        rd = cls(path, experiment, cfg)
        manifest_path = path / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.exists() else {
            "experiment": experiment, "created": _now(), "starts": []}
        manifest["environment"] = environment()
        manifest.setdefault("starts", []).append(_now())
        manifest["seed"] = cfg.get("seed")
        atomic_write_json(existing, record)
        atomic_write_json(manifest_path, manifest)
        return rd

    # -- writing -----------------------------------------------------------------------------
    def set_origin(self, preset: str, overrides: list[str]) -> None:
        """Record how the run was asked for: its preset and ``key=value`` overrides (manifest)."""
        self.preset, self.overrides = preset, list(overrides)
        self.update_manifest(preset=preset, overrides=self.overrides)

    def update_manifest(self, **fields) -> None:
        p = self.path / "manifest.json"
        m = read_json(p)
        m.update(fields)
        atomic_write_json(p, m)

    def log_metrics(self, record: dict) -> None:
        """Append one JSON line to ``metrics.jsonl`` (flushed and fsynced)."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(to_json(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        out = []
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:  # a torn last line from a kill mid-write
                        break
        return out

    def truncate_metrics(self, max_step: int) -> None:
        """Keep only records with ``step <= max_step`` (used when resuming from a checkpoint)."""
        recs = [r for r in self.read_metrics() if r.get("step", -1) <= max_step]
        atomic_write_bytes(self.path / "metrics.jsonl",
                           "".join(to_json(r, sort_keys=True) + "\n" for r in recs).encode())

    def save_arrays(self, name: str, **arrays) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        p = self.path / f"{name}.npz"
        atomic_write_bytes(p, buf.getvalue())
        return p

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / f"{name}.npz", allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def save_figure(self, name: str, fig) -> Path:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        p = self.path / f"{name}.png"
        atomic_write_bytes(p, buf.getvalue())
        return p

    def save_json(self, name: str, obj) -> Path:
        p = self.path / f"{name}.json"
        atomic_write_json(p, obj)
        return p

    def write_summary(self, summary: dict) -> None:
        """Write ``summary.json`` (last) and the run's wall time into the manifest."""
        self.update_manifest(finished=_now(), wall_seconds_last_start=round(time.time() - self._t0, 3))
        atomic_write_json(self.path / "summary.json", summary)

    @property
    def ckpt_dir(self) -> Path:
        return self.path / "ckpt"


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


def _clear_run(path: Path) -> None:
    import shutil

    for p in path.iterdir():
        if p.name in ("config.json", "manifest.json", "metrics.jsonl", "summary.json", "ckpt") or \
                p.suffix in (".npz", ".png", ".json"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


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
    rd = RunDir(path, "", {})
    summary = read_json(path / "summary.json") if (path / "summary.json").exists() else None
    manifest = read_json(path / "manifest.json") if (path / "manifest.json").exists() else {}
    return {"config": read_json(path / "config.json"), "manifest": manifest, "summary": summary,
            "metrics": rd.read_metrics()}
