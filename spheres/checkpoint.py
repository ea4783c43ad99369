"""Orbax checkpoints of a training state, and exact resume.

``Checkpoints(run_dir.ckpt_dir)`` keeps the newest ``max_to_keep`` checkpoints. ``restore_or(state)``
returns the newest saved state (same pytree structure and shardings as ``state``) or ``state``
itself when there is none. Because every batch is a pure function of the step, a resumed run ends
with exactly the parameters of an uninterrupted one (same seed, same machine).
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: Path | str, *, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        """Save asynchronously (``wait`` or ``close`` makes it durable)."""
        self.manager.save(int(step), args=ocp.args.StandardSave(state))

    def restore_or(self, state):
        """The newest checkpoint restored into ``state``'s structure, or ``state`` if none exists."""
        step = self.manager.latest_step()
        if step is None:
            return state
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
