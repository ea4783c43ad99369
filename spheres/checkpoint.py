"""Orbax checkpoints of a training state, with checksums, and exact resume.

``Checkpoints(run_dir.ckpt_dir)`` keeps the newest ``max_to_keep`` checkpoints. ``restore_or(state)``
returns the newest intact saved state (same pytree structure and shardings as ``state``) or
``state`` itself when there is none. Because every batch is a pure function of the step, a resumed
run ends with exactly the parameters of an uninterrupted one (same seed, same machine).

Every checkpoint has a checksum beside it (``ckpt/sha256-STEP.json``: SHA-256 over the bytes,
dtypes and shapes of the state's arrays), written atomically once the save is complete. A
checkpoint that fails to restore, or whose restored arrays do not match their checksum, is skipped
with a warning and the previous one is used.

On a run over several processes only process 0 saves and reads checkpoints (orbax restricted to it
with ``active_processes={0}``): the training state is replicated, so process 0 already holds every
byte (no gather), the checkpoint directory need not be on a shared filesystem, and a dead peer
cannot leave a half-committed multi-process checkpoint behind. A restore is read once on process 0
and broadcast to the others. The checksum file records the process count; training is not resumed
under another count (`restore_or` with ``final_step``), so a run keeps its reduction order.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from . import distributed
from .interrupts import deferred_interrupts


PROCESS_COUNT = "process_count.json"   # ckpt/process_count.json: the processes that saved the run


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


def _host(state):
    """``state`` with every array leaf as a host NumPy array (0-d arrays stay arrays)."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(state))


class Checkpoints:
    def __init__(self, directory: Path | str, *, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.processes, self.writer = distributed.process_count(), distributed.is_writer()
        self._pending: list[tuple[int, str]] = []   # saves whose checksum waits for completion
        self._count_recorded = False
        self.manager = None
        if not self.writer:
            return
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        if self.processes > 1:
            self.directory.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=False,
                multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=0,
                                                                           active_processes={0}))
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return distributed.on_writer(self.manager.latest_step if self.writer else None)

    def _checksum_file(self, step: int) -> Path:
        return self.directory / f"sha256-{int(step)}.json"

    def save(self, step: int, state) -> None:
        """Save asynchronously (``wait`` or ``close`` makes it durable and writes its checksum).
        Only process 0 saves (the others return at once)."""
        if not self.writer:
            return
        if self._pending:          # the previous save is complete once orbax is idle: checksum it now
            self._write_checksums()
        if self.processes > 1:     # host copies: orbax on process 0 alone cannot address the others' devices
            state = _host(state)
        if not self._count_recorded:   # before the save: a kill mid-save still leaves the count
            from .results import atomic_write_json

            atomic_write_json(self.directory / PROCESS_COUNT, {"process_count": self.processes})
            self._count_recorded = True
        self._pending.append((int(step), state_digest(state)))
        with deferred_interrupts():    # Ctrl-C lands after the save is handed to orbax, not inside it
            self.manager.save(int(step), args=ocp.args.StandardSave(state))

    def _write_checksums(self) -> None:
        if not self.writer:
            return
        with deferred_interrupts():
            self._finalise_pending()

    def _finalise_pending(self) -> None:
        from .results import atomic_write_json

        self.manager.wait_until_finished()
        steps = set(self.manager.all_steps())
        for step, digest in self._pending:
            if step in steps:
                atomic_write_json(self._checksum_file(step), {"step": step, "sha256": digest,
                                                              "process_count": self.processes})
        self._pending = []
        for p in self.directory.glob("sha256-*.json"):   # checksums of checkpoints orbax removed
            try:
                if int(p.stem.split("-", 1)[1]) not in steps:
                    p.unlink()
            except (ValueError, OSError):
                pass

    def restore_or(self, state, *, final_step: int | None = None):
        """The newest intact checkpoint restored into ``state``'s structure, or ``state`` if there
        is no checkpoint. Damaged checkpoints are skipped (with a warning) and deleted.

        ``final_step``: training goes on from the restored state up to this step, so a checkpoint
        before it saved by a different number of processes raises `CheckpointError` (a run keeps
        one process count, hence one reduction order). A multi-process run restores on process 0
        and broadcasts the arrays (host NumPy arrays in ``state``'s structure)."""
        if self.processes == 1:
            return self._restore_here(state, state, final_step)
        template = _host(state)
        restored = {}

        def restore_here():
            restored["state"] = self._restore_here(template, template, final_step)
            return restored["state"] is not template

        if not distributed.on_writer(restore_here):
            return state
        return distributed.broadcast_tree(restored["state"] if self.writer else template)

    def _restore_here(self, state, item, final_step):
        from .results import RunFileError, read_json

        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return state
        abstract = (jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, item)
                    if self.processes == 1 else item)
        problems = []
        count_file = self.directory / PROCESS_COUNT
        try:
            run_count = read_json(count_file, dict).get("process_count", 1) if count_file.exists() else 1
        except RunFileError:
            run_count = 1
        for step in steps:
            try:
                restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
                problems.append(f"step {step}: does not restore ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200] if str(e) else ''})")
                self._drop(step, problems[-1])
                continue
            cfile = self._checksum_file(step)
            saved_by = run_count
            if cfile.exists():
                try:
                    record = read_json(cfile, dict)
                except RunFileError as e:
                    record = {}
                    problems.append(str(e))
                if record.get("sha256") != state_digest(restored):
                    problems.append(f"step {step}: checksum mismatch ({cfile.name})")
                    self._drop(step, problems[-1])
                    continue
                saved_by = record.get("process_count", saved_by)
            if final_step is not None and step < final_step and saved_by != self.processes:
                raise CheckpointError(
                    f"{self.directory}: the run was trained to step {step} by {saved_by} "
                    f"process{'es' if saved_by != 1 else ''} and this start has {self.processes}; "
                    f"resume it with --num-processes {saved_by} (the count fixes the reduction "
                    f"order), or start a new run with another --out")
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
        with deferred_interrupts():    # finalise the last save and its checksum whole, then stop
            self._write_checksums()
            if self.manager is not None:
                self.manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
