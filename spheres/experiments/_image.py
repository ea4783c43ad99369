"""The run machinery of every image experiment, and nothing paper-specific.

`ImageConfig` holds the fields every image run has; `load_data` reads its data set. In a run
directory `train_cached` trains a model once (``params-MODEL.npz``; checkpoints under ``ckpt/`` so an
interrupted run resumes) and `cached_examples` keeps adversarial examples (``adv-MODEL.npz``), so a
rerun of the same command resumes instead of redoing finished work. `base_summary` /
`finish_summary` start and write the summary every image experiment shares; `tables` renders its
result as `spheres.tables.Tables` with the `provenance` line and, when the data is not MNIST, a note
that the paper numbers are for MNIST. Model training keys are `model_key` (``train/NAME`` of
`spheres.keys`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Literal, Sequence

import jax
import numpy as np

from ..config import Config, require
from ..images import data as idata
from ..images import models as im
from ..images import train as itrain
from ..keys import stream_key
from ..results import RunDir
from ..tables import Table, Tables

# Overrides that change where the data comes from or how often to checkpoint, not what is
# computed: the preset label does not list them.
_NEUTRAL_OVERRIDES = ("dataset", "data_dir", "seed", "ckpt_every")


@dataclasses.dataclass(frozen=True)
class ImageConfig(Config):
    """Fields every image experiment has. ``n_train``/``n_test``: the first examples of each split
    (``0`` = all); ``epochs``, ``batch``, ``lr``: Adam training; ``ckpt_every``: epochs between
    checkpoints."""

    dataset: Literal["mnist", "fashion_mnist", "fashion_mnist_sample"] = "fashion_mnist"
    data_dir: str | None = None
    n_train: int = 0
    n_test: int = 0
    epochs: int = 5
    batch: int = 100
    lr: float = 1e-3
    ckpt_every: int = 1
    seed: int = 0

    def validate(self) -> None:
        require(self.n_train >= 0 and self.n_test >= 0,
                f"n_train and n_test must be >= 0 (0 = the whole split; got {self.n_train}, {self.n_test})")
        require(self.n_train == 0 or self.n_train >= self.batch,
                f"n_train ({self.n_train}) must be 0 (all) or at least the batch ({self.batch})")
        require(self.epochs >= 0, f"epochs must be >= 0 (got {self.epochs})")
        require(self.batch >= 1, f"batch must be >= 1 (got {self.batch})")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive (got {self.lr})")
        require(self.ckpt_every >= 1, f"ckpt_every must be >= 1 epoch (got {self.ckpt_every})")
        ndev = jax.device_count()
        require(self.batch % ndev == 0,
                f"batch {self.batch} is not divisible by the {ndev} visible devices; use a multiple of {ndev}")

    def memory_estimate(self) -> dict[str, int]:
        """Bytes of the largest arrays: the training images in float32, with one working copy
        (60,000 when ``n_train`` is 0, the size of the largest split we read)."""
        return {"n_train": 2 * 4 * 784 * (self.n_train or 60_000)}

    def preflight(self) -> None:
        """Locate and read the dataset now (cached for the run), so a missing or corrupt file
        fails before the run directory exists."""
        idata.load_dataset(self.dataset, self.data_dir)


def load_data(cfg: ImageConfig) -> idata.ImageDataset:
    """The config's dataset, cut to ``n_train``/``n_test`` (0 = all)."""
    ds = idata.load_dataset(cfg.dataset, cfg.data_dir)
    return idata.take(ds, cfg.n_train or None, cfg.n_test or None)


def model_key(seed: int, name: str) -> jax.Array:
    """The key that initialises and trains model ``name``: stream ``train/NAME`` of `spheres.keys`."""
    return stream_key(seed, f"train/{name}")


def preset_label(run_dir: RunDir) -> str:
    """The run's preset (``quick``, ``medium``, ``paper``, ``custom``), with ``+overrides(k1,k2)``
    naming the overridden keys that change what is computed (not dataset, data_dir, seed or
    ckpt_every)."""
    preset = getattr(run_dir, "preset", "custom")
    keys = []
    for o in getattr(run_dir, "overrides", []):
        k = o.split("=", 1)[0].strip()
        if k not in _NEUTRAL_OVERRIDES and k not in keys:
            keys.append(k)
    return f"{preset}+overrides({','.join(keys)})" if keys else preset


def base_summary(cfg: ImageConfig, run_dir: RunDir, ds: idata.ImageDataset, t0: float) -> dict:
    """The keys every image summary starts with: experiment, dataset (and its detail), whether the
    paper's MNIST numbers apply, preset, seed, epochs, wall time so far, devices and backend."""
    return {
        "experiment": run_dir.experiment,
        "dataset": ds.name,
        "dataset_detail": ds.describe(),
        "paper_dataset": "mnist",
        "paper_numbers_are_for_mnist": ds.name != "mnist",
        "preset": preset_label(run_dir),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "wall_seconds": round(time.time() - t0, 3),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }


def finish_summary(run_dir: RunDir, summary: dict, t0: float) -> dict:
    """Stamp the wall time since ``t0`` and write ``summary.json`` (last); returns the summary."""
    summary["wall_seconds"] = round(time.time() - t0, 3)
    run_dir.write_summary(summary)
    return summary


def train_cached(cfg: ImageConfig, run_dir: RunDir, name: str, ds_x, ds_y, *, progress: bool,
                 recipe: im.ModelRecipe | None = None, settings: itrain.TrainSettings | None = None,
                 key: jax.Array | None = None, **recipe_kw) -> tuple[im.ModelRecipe, dict, dict]:
    """Train the paper model ``name`` (or ``recipe``) once per run directory (see
    `spheres.images.train.train_or_load`); the key is `model_key` unless given. Returns
    ``(recipe, variables, info)``."""
    recipe = recipe or im.paper_model(name, **recipe_kw)
    settings = settings or itrain.settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr)
    key = model_key(cfg.seed, name) if key is None else key
    kw = {"pretrain_epochs": getattr(cfg, "pretrain_epochs", None)} if recipe.pretrain_autoencoder else {}
    variables, info = itrain.train_or_load(run_dir, name, recipe, settings, ds_x, ds_y, key=key,
                                           progress=progress, ckpt_every=cfg.ckpt_every, **kw)
    return recipe, variables, info


_FINGERPRINT = "__config__"


def cached_examples(run_dir: RunDir, name: str, make, cfg: Config | None = None) -> dict:
    """``adv-NAME.npz`` from the run directory, or ``make()`` saved there.

    With ``cfg`` the file also holds the config it was made under (JSON, as bytes), and a file made
    under another config (e.g. after an evaluation-only key such as ``n_attack`` changed) is made
    again rather than reused."""
    fname = f"adv-{itrain.safe_name(name)}"
    stamp = None if cfg is None else np.frombuffer(
        json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode(), np.uint8)
    if (run_dir.path / f"{fname}.npz").exists():
        out = run_dir.load_arrays(fname)
        old = out.pop(_FINGERPRINT, None)
        if stamp is None or (old is not None and np.array_equal(old, stamp)):
            return out
    out = make()
    run_dir.save_arrays(fname, **out, **({} if stamp is None else {_FINGERPRINT: stamp}))
    return out


# ------------------------------------------------------------------------------ reporting


def provenance(summary: dict) -> str:
    """One line: dataset (subset, sizes), preset, seed, wall time, devices."""
    ds = summary["dataset"]
    detail = summary.get("dataset_detail", {})
    return (f"dataset: {ds}" + (f" [{detail['subset']}]" if detail.get("subset") else "")
            + f" (train {detail.get('train_size', '?')}, test {detail.get('test_size', '?')})"
            + f" | preset: {summary['preset']} | seed {summary['seed']} | {summary['wall_seconds']:.0f} s"
            + f" on {summary['devices']} {summary['backend']} device(s)")


def mnist_note(summary: dict) -> str | None:
    """The note that the paper's numbers are for MNIST, when this run's data is something else."""
    if summary.get("paper_numbers_are_for_mnist"):
        return f"NOTE: the paper numbers are for MNIST; ours are for {summary['dataset']}."
    return None


def tables(summary: dict, title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
           notes: Sequence[str] = (), *, caption: str = "", more: Sequence[Table] = ()) -> Tables:
    """An image experiment's result: ``title`` (after the experiment's name), the `provenance`
    line, one table (``header``, ``rows``, ``caption``) and any ``more`` tables, then the MNIST note
    (`mnist_note`) and ``notes``."""
    note = mnist_note(summary)
    return Tables(f"{summary['experiment']}: {title}", provenance(summary),
                  (Table(tuple(header), tuple(tuple(r) for r in rows), caption), *more),
                  ((note,) if note else ()) + tuple(notes))
