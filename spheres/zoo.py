"""Trained models from the archived runs, ready to attack: ``spheres.zoo.load("szegedy/FC100-100-10")``.

Every image experiment saves its trained parameters as ``params-MODEL.npz`` in its run directory,
and the archived runs (``docs/runs/``) keep them. `list_models` finds them; `load` rebuilds the
model from its paper name and run config (`spheres.images.models.paper_model`) and returns it with
its variables and what its run recorded: the data set it was trained on, its clean test error and
the paper row it belongs to. When several runs saved the same model, the one from the experiment
that reports it (``szegedy-table1`` for Table 1's nets, ``goodfellow-fgsm`` for Goodfellow's) wins.

Example::

    from spheres import zoo
    model, variables, info = zoo.load("szegedy/FC100-100-10")
    logits = model.apply(variables, x)           # x (B, 28, 28) in [0, 1] -> (B, 10)
    info.clean_error, info.dataset               # 0.1153, 'fashion_mnist'
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .images import models as im
from .images.train import safe_name
from .results import RunDir, read_json

ENV_VAR = "SPHERES_ZOO"          # a directory of run directories to use instead of docs/runs
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "docs" / "runs"
# Which experiment's copy of a model wins, first first; others only add models not seen yet.
PRECEDENCE = ("szegedy-table1", "goodfellow-fgsm", "szegedy-adversarial-training", "szegedy-spectral",
              "goodfellow-agreement", "goodfellow-rubbish", "szegedy-units")
PAPER_OF = {"szegedy": "Szegedy et al. 2013", "goodfellow": "Goodfellow et al. 2015"}
PAPER_ROW = {"FC10": "Table 1", "FC100-100-10": "Table 1", "FC200-200-10": "Table 1", "AE400-10": "Table 1",
             "FC100-100-10+pool": "§4.2 (adversarial pool)", "conv": "§3, §4.3 (Lipschitz bounds)",
             "softmax": "§4 (FGSM)", "rbf": "§7 (RBF)", "logreg": "§5 (logistic regression)",
             "maxout": "§4, §6 (FGSM, adversarial training)"}


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One trained model: ``name`` (``paper/model``), the ``run`` directory that trained it, the data
    set and clean test error it recorded, and the paper row it belongs to."""

    name: str
    model: str
    experiment: str
    run: Path
    dataset: str
    clean_error: float | None
    paper_row: str
    recipe_kwargs: dict

    def describe(self) -> str:
        err = "-" if self.clean_error is None else f"{100 * self.clean_error:.2f}%"
        return f"{self.name}: clean error {err} on {self.dataset} ({self.paper_row}; run {self.run.name})"


def _root(root) -> Path:
    return Path(root or os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def _candidates(cfg: dict, summary: dict) -> list[str]:
    names = list(cfg.get("models", [])) + ["conv", "softmax", "rbf", "logreg"]
    for model in {cfg.get("model"), summary.get("model")} - {None}:
        names += [model, f"{model}+pool"]
    if "maxout_units" in cfg:
        names.append(f"maxout-{cfg['maxout_units']}")
    return names


def _clean_error(experiment: str, summary: dict, model: str) -> float | None:
    m = (summary.get("models") or {}).get(model)
    if isinstance(m, dict):
        for key in ("test_error", "clean_error"):
            if isinstance(m.get(key), (int, float)):
                return float(m[key])
    if experiment == "szegedy-adversarial-training":
        v = summary.get("variants", {}).get("adversarial pool" if model.endswith("+pool") else "weight decay only")
        return float(v["test_error"]) if v else None
    return None


def _recipe_kwargs(cfg: dict, model: str) -> dict:
    kw = {}
    if model == "conv" and "conv_channels" in cfg:
        kw["conv_channels"] = tuple(cfg["conv_channels"])
    if model.startswith("maxout") and "maxout_pieces" in cfg:
        kw["maxout_pieces"] = cfg["maxout_pieces"]
    return kw


def list_models(root=None) -> list[ZooModel]:
    """Every model with saved parameters under ``root`` (default ``$SPHERES_ZOO``, else
    ``docs/runs``), one per ``paper/model`` name, sorted by name."""
    root = _root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no model zoo at {root}: set {ENV_VAR}=DIR to a directory of run directories")
    runs = []
    for run in sorted(p for p in root.iterdir() if (p / "config.json").is_file() and (p / "summary.json").is_file()):
        experiment = read_json(run / "config.json").get("experiment", "")
        rank = PRECEDENCE.index(experiment) if experiment in PRECEDENCE else len(PRECEDENCE)
        runs.append((rank, run.name, run, experiment))
    found: dict[str, ZooModel] = {}
    for _, _, run, experiment in sorted(runs):
        cfg = read_json(run / "config.json")["config"]
        summary = read_json(run / "summary.json")
        by_file = {safe_name(m): m for m in _candidates(cfg, summary)}
        for f in sorted(run.glob("params-*.npz")):
            model = by_file.get(f.stem[len("params-"):])
            if model is None:
                continue
            paper = experiment.split("-")[0]
            name = f"{paper}/{model}"
            if name in found:
                continue
            detail = summary.get("dataset_detail") or {}
            dataset = detail.get("name", summary.get("dataset", "?")) + (
                "[3v7]" if model == "logreg" else "")
            row = PAPER_ROW.get(model) or PAPER_ROW.get(model.split("(")[0].split("-")[0], "")
            found[name] = ZooModel(name, model, experiment, run, dataset,
                                   _clean_error(experiment, summary, model),
                                   f"{PAPER_OF.get(paper, paper)}, {row}", _recipe_kwargs(cfg, model))
    return [found[k] for k in sorted(found)]


def load(name: str, root=None):
    """``(module, variables, ZooModel)`` for zoo model ``name`` (see `list_models`)."""
    models = {m.name: m for m in list_models(root)}
    if name not in models:
        import difflib

        close = difflib.get_close_matches(name, models, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; available: {', '.join(models)}"
        raise KeyError(f"no zoo model {name!r}{hint}")
    entry = models[name]
    recipe = im.paper_model(entry.model.removesuffix("+pool"), **entry.recipe_kwargs)
    rd = RunDir(entry.run, entry.experiment, {})
    flat = rd.load_arrays(f"params-{safe_name(entry.model)}")
    import flax
    import jax.numpy as jnp

    variables = {"params": flax.traverse_util.unflatten_dict(
        {tuple(k.split("/")): jnp.asarray(v) for k, v in flat.items()})}
    from .images.train import check_params_match, params_file

    check_params_match(variables, recipe.module, params_file(rd, entry.model))
    return recipe.module, variables, entry
