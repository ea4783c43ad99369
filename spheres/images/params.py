"""Saved parameters of a trained image model: ``RUN/params-NAME.npz`` (flat ``/``-joined keys, no
pickle), the file-name-safe model name, and the check that a file fits the model it is loaded for."""

from __future__ import annotations

import re
from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from ..run_files import RunFileError
from . import models as im


def safe_name(name: str) -> str:
    """A file-name-safe, collision-free form of a model name (``FC10(1e-4)`` -> ``FC10_1e-4``,
    ``FC100-100-10'`` -> ``FC100-100-10_prime``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name.replace("'", "_prime")).strip("_")


def params_file(run_dir, name: str) -> Path:
    """Where `save_params` puts model ``name``'s parameters: ``RUN/params-NAME.npz``."""
    return run_dir.path / f"params-{safe_name(name)}.npz"


def save_params(run_dir, name: str, variables) -> Path:
    """Save ``variables["params"]`` as ``params-NAME.npz`` (keys are ``/``-joined paths; no pickle)."""
    flat = flax.traverse_util.flatten_dict(variables["params"], sep="/")
    return run_dir.save_arrays(f"params-{safe_name(name)}", **{k: np.asarray(v) for k, v in flat.items()})


def load_params(run_dir, name: str) -> dict | None:
    """The variables saved by `save_params`, or None when the file does not exist."""
    p = params_file(run_dir, name)
    if not p.exists():
        return None
    flat = run_dir.load_arrays(f"params-{safe_name(name)}")
    return {"params": flax.traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v)
                                                          for k, v in flat.items()})}


def check_params_match(variables: dict, model, path) -> None:
    """Raise `spheres.results.RunFileError` naming ``path`` when ``variables["params"]`` does not have
    the parameter names and shapes of ``model`` (a file from another model or a damaged save)."""
    abstract_key = jax.eval_shape(jax.random.key, 0)     # shapes only: no key is made, nothing is drawn
    want = flax.traverse_util.flatten_dict(
        jax.eval_shape(lambda k: im.init_variables(model, k), abstract_key)["params"], sep="/")
    got = flax.traverse_util.flatten_dict(variables["params"], sep="/")
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise RunFileError(f"{path}: parameters do not match the model (missing {missing[:3]}, unexpected "
                           f"{extra[:3]}); delete the file to retrain this model")
    bad = [(k, tuple(got[k].shape), tuple(want[k].shape)) for k in sorted(want) if tuple(got[k].shape) != tuple(want[k].shape)]
    if bad:
        k, g, w = bad[0]
        raise RunFileError(f"{path}: parameter {k} has shape {g}, the model needs {w} ({len(bad)} mismatched); "
                           f"delete the file to retrain this model")
