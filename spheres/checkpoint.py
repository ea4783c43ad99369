"""Orbax checkpoints of a training state, with checksums, and exact resume.

``Checkpoints(run_dir.ckpt_dir)`` keeps the newest ``max_to_keep`` checkpoints. ``restore_or(state)``
returns the newest intact saved state (same pytree structure and shardings as ``state``) or
``state`` itself when there is none. Because every batch is a pure function of the step, a resumed
run ends with exactly the parameters of an uninterrupted one (same seed, same machine).

Every checkpoint has a checksum beside it (``ckpt/sha256-STEP.json``: SHA-256 over the bytes,
dtypes and shapes of the state's arrays), written atomically once the save is complete. A
checkpoint that fails to restore, or whose restored arrays do not match their checksum, is skipped
with a warning and the previous one is used.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
    """No intact checkpoint could be restored."""


def state_digest(state) -> str:
    """SHA-256 (hex) over the dtype, shape and bytes of every array leaf of ``state``."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(jax.device_get(state)):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Checkpoints:
    def __init__(self, directory: Path | str, *, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
        self._pending: list[tuple[int, str]] = []   # saves whose checksum waits for completion

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def _checksum_file(self, step: int) -> Path:
        return self.directory / f"sha256-{int(step)}.json"

    def save(self, step: int, state) -> None:
        """Save asynchronously (``wait`` or ``close`` makes it durable and writes its checksum)."""
        if self._pending:          # the previous save is complete once orbax is idle: checksum it now
            self._write_checksums()
        self._pending.append((int(step), state_digest(state)))
        self.manager.save(int(step), args=ocp.args.StandardSave(state))

    def _write_checksums(self) -> None:
        from .results import atomic_write_json

        self.manager.wait_until_finished()
        steps = set(self.manager.all_steps())
        for step, digest in self._pending:
            if step in steps:
                atomic_write_json(self._checksum_file(step), {"step": step, "sha256": digest})
        self._pending = []
        for p in self.directory.glob("sha256-*.json"):   # checksums of checkpoints orbax removed
            try:
                if int(p.stem.split("-", 1)[1]) not in steps:
                    p.unlink()
            except (ValueError, OSError):
                pass

    def restore_or(self, state):
        """The newest intact checkpoint restored into ``state``'s structure, or ``state`` if there
        is no checkpoint. Damaged checkpoints are skipped (with a warning) and deleted."""
        from .results import RunFileError, read_json

        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return state
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        problems = []
        for step in steps:
            try:
                restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
                problems.append(f"step {step}: does not restore ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200] if str(e) else ''})")
                self._drop(step, problems[-1])
                continue
            cfile = self._checksum_file(step)
            if cfile.exists():
                try:
                    expected = read_json(cfile, dict).get("sha256")
                except RunFileError as e:
                    expected = None
                    problems.append(str(e))
                if expected != state_digest(restored):
                    problems.append(f"step {step}: checksum mismatch ({cfile.name})")
                    self._drop(step, problems[-1])
                    continue
            return restored
        raise CheckpointError(f"{self.directory}: no intact checkpoint ({'; '.join(problems)}); "
                              f"delete {self.directory} to train from the start")

    def _drop(self, step: int, why: str) -> None:
        msg = f"{self.directory}: checkpoint {why}; falling back to the previous checkpoint"
        warnings.warn(msg, stacklevel=3)
        print(f"spheres: warning: {msg}", file=sys.stderr)
        try:
            self.manager.delete(step)   # a later save of the same step must not collide with it
        except Exception:
            import shutil

            shutil.rmtree(self.directory / str(step), ignore_errors=True)
            self.manager.reload()
        self._checksum_file(step).unlink(missing_ok=True)

    def wait(self) -> None:
        self._write_checksums()

    def close(self) -> None:
        self._write_checksums()
        self.manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
