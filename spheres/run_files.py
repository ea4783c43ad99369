"""The files of a run directory: atomic JSON, strict metrics, the lock, and what ``--force`` may
delete (`spheres.results.RunDir` uses these; see docs/design.md, "Reliability").

* ``RUN/.lock`` holds ``{"pid", "host", "started"}`` (created with ``O_CREAT|O_EXCL``); a lock of a
  dead process on this host is stale and taken over with a warning.
* ``manifest.json``'s ``files`` lists what the run wrote; `clear_run` deletes only those (sub-runs
  through their own lists), checking everything before deleting anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


class RunDirConflict(FileExistsError):
    """The directory already holds a different run."""


class RunFileError(ValueError):
    """A run file is corrupt or of the wrong shape; the message names the file and the fix."""


class RunDirLocked(RunDirConflict):
    """Another live process holds the run directory's lock."""


LOCK = ".lock"
# Files every run writes; a run whose manifest predates the written-files list is cleared of these only.
_FIXED_FILES = ("config.json", "manifest.json", "metrics.jsonl", "summary.json", "ckpt",
                "train_timing.json")


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


def read_json(path: Path | str, kind: type | None = None):
    """The JSON value in ``path``; a corrupt file (or one whose top level is not ``kind``) raises
    `RunFileError` naming the file."""
    path = Path(path)
    try:
        with open(path) as f:
            value = json.load(f)
    except UnicodeDecodeError as e:
        raise RunFileError(f"{path}: not UTF-8 text ({e.reason}); the file is corrupt") from None
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: {e.msg} at line {e.lineno} column {e.colno}; the file is "
                           f"corrupt") from None
    if kind is not None and not isinstance(value, kind):
        raise RunFileError(f"{path}: expected a JSON {'object' if kind is dict else kind.__name__}, "
                           f"found {type(value).__name__}; the file is corrupt")
    return value


def acquire_lock(path: Path) -> bool:
    """Take ``path/.lock`` for this process; False when the parent run's lock (ours) covers it.
    A live owner raises `RunDirLocked`; a dead one on this host is taken over with a warning."""
    lock = path / LOCK
    me = {"pid": os.getpid(), "host": platform.node(),
          "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if _lock_owner(path.parent / LOCK) == (me["pid"], me["host"]):
        return False  # a sub-run of a run this process holds: the parent's lock covers it
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            if not isinstance(owner, dict):
                owner = {}
            pid, host = owner.get("pid"), owner.get("host")
            if host == me["host"] and pid == me["pid"]:
                return False      # an earlier RunDir of this process holds it
            if host == me["host"] and isinstance(pid, int) and _pid_alive(pid):
                raise RunDirLocked(f"{path} is in use by process {pid} on {host} (started "
                                   f"{owner.get('started')}); wait for it or stop it")
            if host not in (None, me["host"]):
                raise RunDirLocked(f"{path} is locked by process {pid} on host {host}; "
                                   f"if that run is dead, delete {lock}")
            import warnings

            warnings.warn(f"{lock}: taking over the stale lock of dead process {pid}",
                          stacklevel=3)
            print(f"spheres: warning: {lock}: taking over the stale lock of dead process {pid}",
                  file=sys.stderr)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        return True
    raise RunDirLocked(f"{path}: could not take the lock {lock}")


@contextlib.contextmanager
def directory_lock(path: Path):
    """An exclusive ``flock`` on the directory ``path`` itself (no lock file is left behind): it
    serialises read-modify-write of the directory's manifest between the shards of a job array."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_json(path: Path, change) -> dict:
    """Apply ``change(obj)`` to the JSON object in ``path`` under `directory_lock`; returns it."""
    with directory_lock(path.parent):
        obj = read_json(path, dict)
        before = json.dumps(obj, sort_keys=True, default=str)
        change(obj)
        if json.dumps(obj, sort_keys=True, default=str) != before:
            atomic_write_json(path, obj)
    return obj


def read_metrics_file(p: Path) -> list[dict]:
    """`RunDir.read_metrics` for a path."""
    if not p.exists():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n") and data != b""
    out = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode())
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            if torn and i == len(lines):
                print(f"spheres: warning: {p}: line {i} is incomplete (the run was killed while "
                      f"writing it); dropped", file=sys.stderr)
                break
            raise RunFileError(f"{p}: line {i} is corrupt ({e}); repair or delete the line, or "
                               f"start the run again elsewhere") from None
        out.append(rec)
    return out


def _lock_owner(lock: Path) -> tuple | None:
    try:
        owner = json.loads(lock.read_text())
        return owner.get("pid"), owner.get("host")
    except (OSError, ValueError, AttributeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_files(path: Path) -> list[str]:
    """What the run in ``path`` wrote (its manifest's ``files``; the fixed names for older runs)."""
    pm = path / "manifest.json"
    m = read_json(pm, dict) if pm.exists() else {}
    files = m.get("files")
    if files is None:
        return [n for n in _FIXED_FILES if (path / n).exists()]
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise RunFileError(f"{pm}: 'files' is not a list of names; the file is corrupt")
    return files


def _plan_clear(path: Path, plan: list[tuple[Path, bool]]) -> None:
    """Check that the run in ``path`` (and its sub-runs) can be cleared; append what to delete."""
    for name in _run_files(path):
        p = (path / name.rstrip("/")).resolve()
        if p.parent != path.resolve() or p.name in ("", ".", ".."):
            raise RunFileError(f"{path / 'manifest.json'}: lists {name!r}, which is not a file of the "
                               f"run; the file is corrupt")
        if not p.exists() and not p.is_symlink():
            continue
        if name.endswith("/"):           # a sub-run: cleared by its own manifest, then removed if empty
            if not (p / "config.json").exists() and not (p / "manifest.json").exists():
                continue
            lock = p / LOCK
            if lock.exists():
                try:
                    owner = json.loads(lock.read_text() or "{}")
                except (OSError, ValueError):
                    owner = {}
                pid = owner.get("pid") if isinstance(owner, dict) else None
                if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
                    raise RunDirLocked(f"{p} is in use by process {pid}; cannot replace it")
            _plan_clear(p, plan)
            plan.append((p, True))
            continue
        plan.append((p, False))


def clear_run(path: Path) -> None:
    """Delete what the manifest says the run wrote, sub-runs included: everything is checked
    before anything is deleted; files the run did not write stay."""
    import shutil

    plan: list[tuple[Path, bool]] = []
    _plan_clear(path, plan)
    for p, subrun in plan:
        if subrun:
            with contextlib.suppress(FileNotFoundError):
                (p / LOCK).unlink()
            with contextlib.suppress(OSError):
                p.rmdir()      # its files were cleared above; kept if other files remain
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


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
