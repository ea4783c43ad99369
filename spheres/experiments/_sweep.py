"""Sweeps of independent members spread over jobs: ``spheres run SWEEP --shard K/N``.

A sweep (one member per dimension, training-set size or model) writes each member into its own
sub-run ``RUN/NAME``. Job ``K`` of ``N`` runs members ``K, K + N, K + 2N, ...`` into the same
``RUN`` (no coordinator: a scheduler's job array is enough; each member holds its own lock). The
same command without ``--shard`` then merges: every member is finished, so it only reads their
summaries and writes the sweep's own summary, table and figures, equal to an unsharded run's (the
members are the same runs: same config, same keys). That merge refuses to train members a shard
has not finished; ``--shard 0/1`` runs whatever is left in one job.
"""

from __future__ import annotations

from .. import distributed
from ..config import ConfigError
from ..results import RunDir, read_json


def members_to_run(run_dir: RunDir, names: list[str]) -> list[int]:
    """Indices into ``names`` of the members this job runs: those of its shard, or all of them.

    The unsharded run of a sweep that was started in shards (the merge) raises `ConfigError`
    naming the unfinished members and the shards they belong to.
    """
    if run_dir.shard is not None:
        k, n = run_dir.shard
        return [i for i in range(len(names)) if i % n == k]

    def unfinished():
        manifest = run_dir.path / "manifest.json"
        shards = read_json(manifest, dict).get("shards") if manifest.exists() else None
        if not shards:
            return None
        return shards, [i for i, name in enumerate(names)
                        if not (run_dir.path / name / "summary.json").exists()]

    found = distributed.on_writer(unfinished)
    if found and found[1]:
        shards, missing = found
        owners = sorted({i % shards for i in missing})
        raise ConfigError(
            f"{run_dir.path} was run in {shards} shards and {len(missing)} of {len(names)} members "
            f"are unfinished ({', '.join(names[i] for i in missing)}); finish them with "
            f"{' and '.join(f'--shard {k}/{shards}' for k in owners)} (or all here with --shard 0/1), "
            f"then merge")
    return list(range(len(names)))


def shard_result(run_dir: RunDir, names: list[str], done: list[int]) -> dict:
    """What a shard's job returns in place of a summary."""
    return {"shard": list(run_dir.shard), "members": [names[i] for i in done]}
