"""Szegedy et al. 2013, "Intriguing properties of neural networks" (arXiv 1312.6199), on images.

Experiments (each ``spheres run NAME --preset quick|full [--set dataset=mnist] [--set data_dir=DIR]``):

* ``szegedy-table1``: train/test error and the average minimum distortion of box-constrained
  L-BFGS adversarial examples (``attacks.lbfgs``: targeted, per-example search over c;
  distortion ``sqrt(Σ (x' − x)² / 784)``) for FC10(1e-4), FC10(1e-2), FC10(1), FC100-100-10,
  FC200-200-10 and AE400-10 (Table 1).
* ``szegedy-transfer``: the same models and examples; the error rate of every model on every
  model's examples, plus Gaussian-noise rows σ = 0.1, 0.3 (Table 2).
* ``szegedy-cross-training``: FC100-100-10 and FC123-456-10 trained on P₁, FC100-100-10' on P₂
  (disjoint halves of the training set); transfer of their examples as found, scaled to stddev
  0.1, and Gaussian noise of stddev 0.1 (Tables 3-4).
* ``szegedy-spectral``: per-layer upper Lipschitz bounds (``theory.dense_lipschitz``,
  ``theory.conv_lipschitz``) of every trained model and their product, beside a measured lower
  bound (the largest input-Jacobian norm on test points) and the radius the bound certifies (§4.3).
* ``szegedy-units``: test images that maximise single hidden units vs random directions of the same
  layer (image grids), with the label purity of each grid as a number (§3).
* ``szegedy-adversarial-training``: FC100-100-10 with weight decay only vs trained with a refreshed
  pool of L-BFGS adversarial examples (§4.2).

Paper numbers are for MNIST; this machine has Fashion-MNIST (Debian ``dataset-fashion-mnist``), so
the default dataset is ``fashion_mnist`` and every table says which dataset it used. For MNIST::

    spheres run szegedy-table1 --preset full --set dataset=mnist --set data_dir=DIR

Trained parameters are cached in the run directory (``params-MODEL.npz``) and adversarial examples
in ``adv-MODEL.npz``, so a rerun of the same command resumes instead of redoing finished work.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
import zlib
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

import attacks
import theory

from .. import image_data as idata
from .. import image_models as im
from .. import image_train as itrain
from ..config import Config, require
from ..results import RunDir
from . import register

# =========================================================================== shared image helpers


@dataclasses.dataclass(frozen=True)
class ImageConfig(Config):
    """Fields every image experiment has. ``n_train``/``n_test``: the first examples of each split
    (``0`` = all). ``preset_name`` records which preset the config came from (for the report)."""

    dataset: Literal["mnist", "fashion_mnist", "fashion_mnist_sample"] = "fashion_mnist"
    data_dir: str | None = None
    n_train: int = 0
    n_test: int = 0
    epochs: int = 5
    batch: int = 100
    lr: float = 1e-3
    ckpt_every: int = 1
    seed: int = 0
    preset_name: str = "custom"

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

    def preflight(self) -> None:
        """Locate and read the dataset now (cached for the run), so a missing or corrupt file
        fails before the run directory exists."""
        idata.load_dataset(self.dataset, self.data_dir)


def load_data(cfg: ImageConfig) -> idata.ImageDataset:
    """The config's dataset, cut to ``n_train``/``n_test`` (0 = all)."""
    ds = idata.load_dataset(cfg.dataset, cfg.data_dir)
    return idata.take(ds, cfg.n_train or None, cfg.n_test or None)


def named_keys(seed: int, names: tuple[str, ...]) -> dict[str, jax.Array]:
    """Independent keys by name from one seed: ``fold_in(key(seed), crc32(name))``."""
    root = jax.random.key(seed)
    return {n: jax.random.fold_in(root, zlib.crc32(n.encode()) & 0x7FFFFFFF) for n in names}


def model_key(seed: int, model_name: str) -> jax.Array:
    return named_keys(seed, (f"train/{model_name}",))[f"train/{model_name}"]


def preset_label(cfg: ImageConfig) -> str:
    """``quick`` / ``full``, or ``quick+overrides`` when fields other than dataset, data_dir and
    seed differ from the named preset."""
    cls = type(cfg)
    if cfg.preset_name not in cls.PRESETS:
        return cfg.preset_name
    ref = cls(**cls.PRESETS[cfg.preset_name])
    ignore = {"dataset", "data_dir", "seed", "ckpt_every"}
    diff = [f.name for f in dataclasses.fields(cfg)
            if f.name not in ignore and getattr(cfg, f.name) != getattr(ref, f.name)]
    return cfg.preset_name if not diff else f"{cfg.preset_name}+overrides({','.join(diff)})"


def finish_summary(run_dir: RunDir, summary: dict, t0: float) -> dict:
    """Stamp the wall time since ``t0`` and write ``summary.json`` (last); returns the summary."""
    summary["wall_seconds"] = round(time.time() - t0, 3)
    run_dir.write_summary(summary)
    return summary


def base_summary(cfg: ImageConfig, run_dir: RunDir, ds: idata.ImageDataset, t0: float) -> dict:
    return {
        "experiment": run_dir.experiment,
        "dataset": ds.name,
        "dataset_detail": ds.describe(),
        "paper_dataset": "mnist",
        "paper_numbers_are_for_mnist": ds.name != "mnist",
        "preset": preset_label(cfg),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "wall_seconds": round(time.time() - t0, 3),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }


def train_cached(cfg: ImageConfig, run_dir: RunDir, name: str, ds_x, ds_y, *, progress: bool,
                 recipe: im.ModelRecipe | None = None, settings: itrain.TrainSettings | None = None,
                 key: jax.Array | None = None, **recipe_kw) -> tuple[im.ModelRecipe, dict, dict]:
    """Train the paper model ``name`` (or ``recipe``) once per run directory; see
    ``image_train.train_or_load``. Returns ``(recipe, variables, info)``."""
    recipe = recipe or im.paper_model(name, **recipe_kw)
    settings = settings or itrain.settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr)
    key = model_key(cfg.seed, name) if key is None else key
    kw = {"pretrain_epochs": getattr(cfg, "pretrain_epochs", None)} if recipe.pretrain_autoencoder else {}
    variables, info = itrain.train_or_load(run_dir, name, recipe, settings, ds_x, ds_y, key=key,
                                           progress=progress, ckpt_every=cfg.ckpt_every, **kw)
    return recipe, variables, info


def pct(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%"


def num(v, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def in_order(d: dict, order) -> list:
    """``d``'s items in ``order`` first (summary.json is written with sorted keys), then the rest."""
    order = list(order)
    return sorted(d.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def render_table(summary: dict, title: str, header: list[str], rows: list[list[str]],
                 notes: list[str] = ()) -> str:
    """A plain-text table with a provenance line (dataset, preset, run time) and notes."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    ds = summary["dataset"]
    detail = summary.get("dataset_detail", {})
    prov = (f"dataset: {ds}" + (f" [{detail['subset']}]" if detail.get("subset") else "")
            + f" (train {detail.get('train_size', '?')}, test {detail.get('test_size', '?')})"
            + f" | preset: {summary['preset']} | seed {summary['seed']} | {summary['wall_seconds']:.0f} s"
            + f" on {summary['devices']} {summary['backend']} device(s)")
    out = [f"{summary['experiment']}: {title}", prov]
    if summary.get("paper_numbers_are_for_mnist"):
        out.append(f"NOTE: the paper numbers are for MNIST; ours are for {ds}.")
    out += [line, fmt(header), line] + [fmt(r) for r in rows] + [line]
    out += [f"  {n}" for n in notes]
    return "\n".join(out)


def image_grid_figure(rows: list[np.ndarray], row_titles: list[str], *, col_titles=None,
                      cmap="gray", vmin=0.0, vmax=1.0, scale: float = 1.1):
    """A matplotlib Figure (no pyplot) with one row of 28×28 images per entry of ``rows``."""
    from matplotlib.figure import Figure

    ncol = max(len(r) for r in rows)
    fig = Figure(figsize=(scale * ncol + 1.5, scale * len(rows) + 0.5))
    for i, (imgs, title) in enumerate(zip(rows, row_titles)):
        for j in range(ncol):
            ax = fig.add_subplot(len(rows), ncol, i * ncol + j + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(np.asarray(imgs[j]).reshape(28, 28), cmap=cmap, vmin=vmin, vmax=vmax)
            else:
                ax.axis("off")
            if j == 0:
                ax.set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
            if i == 0 and col_titles is not None and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=7)
    return fig


# =========================================================================== L-BFGS examples


def choose_targets(key: jax.Array, y: np.ndarray, pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """A random target label per example, different from the true label and the model's prediction."""
    n = y.shape[0]
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_classes))(jax.random.split(key, n))
    perms = np.asarray(perms)
    ok = (perms != y[:, None]) & (perms != pred[:, None])
    return perms[np.arange(n), np.argmax(ok, axis=1)].astype(np.int32)


def lbfgs_examples(recipe: im.ModelRecipe, variables, x: np.ndarray, y: np.ndarray, *, key: jax.Array,
                   c_rounds: int, maxiter: int, chunk: int) -> dict[str, np.ndarray]:
    """Szegedy's targeted box-constrained L-BFGS examples for ``x (n, 28, 28)``.

    Targets are random labels ≠ the true label and ≠ the model's prediction. Runs
    ``attacks.lbfgs`` on flattened inputs in fixed-size chunks (one compilation per architecture).
    Returns ``x, y, target, x_adv, success, distortion`` (``sqrt(Σ(x'−x)²/784)``) and ``num_steps``.
    """
    n = x.shape[0]
    pred = itrain.evaluate(recipe.module, variables, x, y).predictions
    target = choose_targets(key, np.asarray(y), pred)
    xf = np.asarray(x, np.float32).reshape(n, -1)
    f = im.apply_fn(recipe.module)
    b = min(chunk, n)
    outs = []
    for s in range(0, n, b):
        xc, tc = xf[s:s + b], target[s:s + b]
        k = xc.shape[0]
        if k < b:
            xc = np.concatenate([xc, np.repeat(xc[-1:], b - k, 0)])
            tc = np.concatenate([tc, np.repeat(tc[-1:], b - k, 0)])
        res = attacks.lbfgs(f, xc, tc, params=variables, bounds=(0.0, 1.0), c_rounds=c_rounds,
                            maxiter=maxiter)
        outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:k], res))
    cat = lambda field: np.concatenate([getattr(o, field) for o in outs])  # noqa: E731
    x_adv = cat("x_adv").reshape(x.shape)
    return {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.int32), "target": target,
            "x_adv": x_adv.astype(np.float32), "success": cat("success").astype(bool),
            "distortion": (cat("distance") / math.sqrt(xf.shape[1])).astype(np.float32),
            "num_steps": cat("num_steps")}


def cached_examples(run_dir: RunDir, name: str, make) -> dict[str, np.ndarray]:
    """``adv-NAME.npz`` from the run directory, or ``make()`` saved there."""
    fname = f"adv-{itrain._safe(name)}"
    if (run_dir.path / f"{fname}.npz").exists():
        return run_dir.load_arrays(fname)
    out = make()
    run_dir.save_arrays(fname, **out)
    return out


def example_stats(ex: dict) -> dict:
    s = ex["success"]
    return {"n_attacked": int(s.size), "attack_success_rate": float(s.mean()),
            "mean_distortion": float(ex["distortion"][s].mean()) if s.any() else float("nan"),
            "median_distortion": float(np.median(ex["distortion"][s])) if s.any() else float("nan"),
            "mean_lbfgs_iterations": float(ex["num_steps"].mean()),
            "targets_reached_in_box": bool(np.all(ex["x_adv"] >= 0.0) and np.all(ex["x_adv"] <= 1.0))}


def predictions(recipe: im.ModelRecipe, variables, x) -> np.ndarray:
    return itrain.evaluate(recipe.module, variables, x, np.zeros(x.shape[0], np.int32)).predictions


def gaussian_noise(key: jax.Array, x: np.ndarray, sigma: float) -> np.ndarray:
    """``clip(x + σ·N(0, I), 0, 1)``: Szegedy's noise controls."""
    noise = np.asarray(jax.random.normal(key, x.shape, jnp.float32))
    return np.clip(x + sigma * noise, 0.0, 1.0).astype(np.float32)


# =========================================================================== Table 1 and Table 2

TABLE1_MODELS = ("FC10(1e-4)", "FC10(1e-2)", "FC10(1)", "FC100-100-10", "FC200-200-10", "AE400-10")

# Szegedy et al. 2013, Table 1 (MNIST): train error, test error, average minimum distortion.
# Status per PAPERS.md: secondary (from summaries/reproductions of the paper's table).
PAPER_TABLE1 = {
    "FC10(1e-4)": (0.067, 0.074, 0.062),
    "FC10(1e-2)": (0.10, 0.094, 0.10),
    "FC10(1)": (0.212, 0.20, 0.14),
    "FC100-100-10": (0.0, 0.0164, 0.058),
    "FC200-200-10": (0.0, 0.0154, 0.065),
    "AE400-10": (0.0057, 0.019, 0.086),
}
# Szegedy et al. 2013, Table 2 (MNIST), the entries PAPERS.md lists (partly secondary):
# (row = examples generated for / noise, column = model evaluated) -> error rate.
PAPER_TABLE2 = {
    ("FC10(1e-4)", "FC100-100-10"): 0.02,
    ("FC10(1)", "FC10(1e-4)"): 0.719,
    ("FC100-100-10", "FC10(1e-4)"): 0.289,
    ("noise σ=0.1", "FC10(1e-4)"): 0.05,
    ("noise σ=0.1", "FC100-100-10"): 0.0,
    ("noise σ=0.3", "FC10(1e-4)"): 0.156,
    ("noise σ=0.3", "FC100-100-10"): 0.05,
}


@dataclasses.dataclass(frozen=True)
class SzegedyTable1Config(ImageConfig):
    """Szegedy Table 1 (and Table 2 with ``szegedy-transfer``).

    ``models``: paper names (see ``image_models``); ``pretrain_epochs``: autoencoder pre-training
    epochs of AE400-10; ``n_attack``: the first test examples attacked; ``c_rounds``,
    ``lbfgs_maxiter``: the L-BFGS c search; ``attack_chunk``: examples per compiled attack call.
    """

    models: tuple[str, ...] = TABLE1_MODELS
    pretrain_epochs: int = 5
    n_attack: int = 100
    c_rounds: int = 8
    lbfgs_maxiter: int = 100
    attack_chunk: int = 100
    noise_sigmas: tuple[float, ...] = (0.1, 0.3)

    PRESETS: typing.ClassVar = {
        "quick": dict(preset_name="quick", dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=4000, n_test=1000, epochs=4, pretrain_epochs=3,
                      n_attack=32, c_rounds=5, lbfgs_maxiter=40, attack_chunk=32),
        "full": dict(preset_name="full", epochs=50, pretrain_epochs=50, n_attack=1000, c_rounds=10,
                     lbfgs_maxiter=200, attack_chunk=100, ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU (Fashion-MNIST subset)",
                             "full": "~20 min on 2 CPU cores (measured 1,203 s: 6 models × 50 epochs on 60k, 1000 L-BFGS attacks each)"}

    def validate(self) -> None:
        super().validate()
        require(len(self.models) >= 1, "models must name at least one model")
        for m in self.models:
            try:
                im.paper_model(m)
            except ValueError as e:
                require(False, str(e))
        require(len(set(self.models)) == len(self.models), f"models has duplicates: {self.models}")
        require(self.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0 (got {self.pretrain_epochs})")
        require(self.n_attack >= 1, f"n_attack must be >= 1 (got {self.n_attack})")
        require(self.n_test == 0 or self.n_attack <= self.n_test,
                f"n_attack ({self.n_attack}) must not exceed n_test ({self.n_test})")
        require(self.c_rounds >= 1 and self.lbfgs_maxiter >= 1 and self.attack_chunk >= 1,
                "c_rounds, lbfgs_maxiter and attack_chunk must be >= 1")
        require(all(s > 0 for s in self.noise_sigmas), f"noise_sigmas must be positive ({self.noise_sigmas})")


def _train_and_attack(cfg: SzegedyTable1Config, run_dir: RunDir, ds: idata.ImageDataset, *,
                      progress: bool) -> dict:
    """Train every model of ``cfg.models`` and make its L-BFGS examples (cached in the run dir)."""
    out = {}
    x_att, y_att = ds.x_test[:cfg.n_attack], ds.y_test[:cfg.n_attack]
    for name in cfg.models:
        recipe, variables, info = train_cached(cfg, run_dir, name, ds.x_train, ds.y_train, progress=progress)
        t0 = time.time()
        ex = cached_examples(run_dir, name, lambda: lbfgs_examples(
            recipe, variables, x_att, y_att, key=named_keys(cfg.seed, (f"attack/{name}",))[f"attack/{name}"],
            c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=cfg.attack_chunk))
        train_ev = itrain.evaluate(recipe.module, variables, ds.x_train, ds.y_train)
        test_ev = itrain.evaluate(recipe.module, variables, ds.x_test, ds.y_test)
        out[name] = {"recipe": recipe, "variables": variables, "examples": ex,
                     "row": {"train_error": train_ev.error, "test_error": test_ev.error,
                             "params": im.count_params(variables), "weight_decay": list(recipe.weight_decay),
                             "train_seconds": info["train_seconds"], "reused_params": info["reused"],
                             "attack_seconds": round(time.time() - t0, 3), **example_stats(ex)}}
    return out


def _examples_figure(models: dict, k: int = 6):
    rows, titles = [], []
    for name, m in models.items():
        ex = m["examples"]
        idx = np.flatnonzero(ex["success"])[:k]
        if idx.size == 0:
            continue
        rows += [ex["x"][idx], ex["x_adv"][idx], 0.5 + 5.0 * (ex["x_adv"][idx] - ex["x"][idx])]
        titles += [f"{name}\noriginal", "adversarial", "difference ×5"]
    return image_grid_figure(rows, titles) if rows else None


@register("szegedy-table1", SzegedyTable1Config,
          "Szegedy Table 1: train/test error and mean minimum L-BFGS distortion per model",
          table=lambda s: format_table1(s))
def run_table1(cfg: SzegedyTable1Config, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    models = _train_and_attack(cfg, run_dir, ds, progress=progress)
    fig = _examples_figure(models)
    if fig is not None:
        run_dir.save_figure("adversarial_examples", fig)
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "models": {n: m["row"] for n, m in models.items()},
        "distortion_definition": "sqrt(sum((x_adv - x)^2) / 784), mean over successful attacks",
        "attack": {"name": "attacks.lbfgs", "targeted": True, "targets": "random label != true label and != prediction",
                   "bounds": [0.0, 1.0], "c_rounds": cfg.c_rounds, "lbfgs_maxiter": cfg.lbfgs_maxiter,
                   "n_attacked": cfg.n_attack},
        "paper_table1_train_test_distortion": {k: list(v) for k, v in PAPER_TABLE1.items()},
        "paper_source": "Szegedy et al. 2013, Table 1 (MNIST; secondary per PAPERS.md)",
    })
    return finish_summary(run_dir, summary, t0)


def format_table1(s: dict) -> str:
    rows = []
    for name, r in in_order(s["models"], TABLE1_MODELS):
        p = PAPER_TABLE1.get(name, (None, None, None))
        rows.append([name, pct(p[0]), pct(r["train_error"]), pct(p[1]), pct(r["test_error"]),
                     num(p[2]), num(r["mean_distortion"]), pct(r["attack_success_rate"])])
    return render_table(s, "train/test error and average minimum distortion (Szegedy Table 1)",
                        ["model", "train err paper", "ours", "test err paper", "ours",
                         "distortion paper", "ours", "attack success"], rows,
                        [f"paper: {s['paper_source']}",
                         f"distortion = {s['distortion_definition']}; {s['attack']['n_attacked']} test "
                         f"examples per model, c search {s['attack']['c_rounds']} rounds"])


@dataclasses.dataclass(frozen=True)
class SzegedyTransferConfig(SzegedyTable1Config):
    """Szegedy Table 2: Table 1's models and examples, evaluated on every model."""

    PRESETS: typing.ClassVar = SzegedyTable1Config.PRESETS
    COST: typing.ClassVar = SzegedyTable1Config.COST


def transfer_matrix(models: dict, x_rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """``{row: {model: error rate}}``: each row is ``(x, y, mask)``; the rate counts ``pred ≠ y``
    over the examples where ``mask`` holds (e.g. the source attack succeeded)."""
    fns = {n: im.apply_fn(m["recipe"].module) for n, m in models.items()}
    params = {n: m["variables"] for n, m in models.items()}
    out = {}
    for row, (x, y, mask) in x_rows.items():
        xf = jnp.asarray(x.reshape(x.shape[0], -1))
        res = attacks.transfer_error_rates(xf, jnp.asarray(y), fns, params=params, mask=jnp.asarray(mask),
                                           batch_size=min(500, x.shape[0]))
        out[row] = {n: float(v) for n, v in res.error_rate.items()}
        out[row]["_count"] = int(np.sum(mask))
    return out


@register("szegedy-transfer", SzegedyTransferConfig,
          "Szegedy Table 2: cross-model transfer of L-BFGS examples, with Gaussian-noise rows",
          table=lambda s: format_transfer(s))
def run_transfer(cfg: SzegedyTransferConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    models = _train_and_attack(cfg, run_dir, ds, progress=progress)
    rows = {}
    for name, m in models.items():
        ex = m["examples"]
        rows[name] = (ex["x_adv"], ex["y"], ex["success"])
    x_att, y_att = ds.x_test[:cfg.n_attack], ds.y_test[:cfg.n_attack]
    noise_keys = named_keys(cfg.seed, tuple(f"noise/{s}" for s in cfg.noise_sigmas))
    for sigma in cfg.noise_sigmas:
        rows[f"noise σ={sigma:g}"] = (gaussian_noise(noise_keys[f"noise/{sigma}"], x_att, sigma), y_att,
                                      np.ones(y_att.shape, bool))
    rows["clean (no perturbation)"] = (x_att, y_att, np.ones(y_att.shape, bool))
    matrix = transfer_matrix(models, rows)
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "models": list(models),
        "row_distortion": {n: m["row"]["mean_distortion"] for n, m in models.items()},
        "transfer_error_rate": matrix,
        "transfer_definition": "error rate (prediction != true label) of the column model on the row "
                               "model's successful L-BFGS examples (or on noisy / clean test images)",
        "noise_sigmas": list(cfg.noise_sigmas),
        "noise_clipped_to_unit_box": True,
        "paper_table2": {f"{r} -> {c}": v for (r, c), v in PAPER_TABLE2.items()},
        "paper_source": "Szegedy et al. 2013, Table 2 (MNIST; the entries PAPERS.md lists, partly secondary)",
        "models_detail": {n: m["row"] for n, m in models.items()},
    })
    return finish_summary(run_dir, summary, t0)


def format_transfer(s: dict) -> str:
    cols = s["models"]
    rows = []
    for row, rates in in_order(s["transfer_error_rate"], cols + [f"noise σ={x:g}" for x in s["noise_sigmas"]]):
        cells = []
        for c in cols:
            paper = s["paper_table2"].get(f"{row} -> {c}")
            cells.append(pct(rates[c]) + (f" ({pct(paper)})" if paper is not None else ""))
        dist = s["row_distortion"].get(row)
        rows.append([row] + cells + [num(dist) if dist is not None else "-", str(rates["_count"])])
    return render_table(s, "cross-model transfer: error of column model on row's examples (Szegedy Table 2)",
                        ["examples for \\ model"] + cols + ["distortion", "n"], rows,
                        ["ours (paper in parentheses where PAPERS.md gives it);", f"paper: {s['paper_source']}",
                         "diagonal = 100% by construction (each example reached a wrong target on its own model)"])


# =========================================================================== Tables 3-4

CROSS_MODELS = (("FC100-100-10", "P1"), ("FC123-456-10", "P1"), ("FC100-100-10'", "P2"))
# Szegedy et al. 2013, Table 4 (MNIST), the entries PAPERS.md lists (partly secondary).
PAPER_TABLE4 = {
    ("FC100-100-10", "FC123-456-10"): 0.262,
    ("FC100-100-10", "FC100-100-10'"): 0.059,
    ("FC100-100-10 scaled to stddev 0.1", "FC123-456-10"): 0.98,
    ("FC100-100-10 scaled to stddev 0.1", "FC100-100-10'"): 0.43,
}
PAPER_TABLE4_NOISE = (0.026, 0.028)     # Gaussian noise stddev 0.1: 2.6-2.8% on these models
PAPER_TABLE3_DISTORTION_FC100 = 0.062


@dataclasses.dataclass(frozen=True)
class SzegedyCrossTrainingConfig(ImageConfig):
    """Szegedy Tables 3-4: models trained on disjoint halves P₁, P₂ of the training set.

    ``p_size``: examples in each of P₁, P₂ (paper: 30,000); ``amplify_to``: the stddev the
    examples' perturbations are scaled to (paper: 0.1); ``noise_sigma``: the noise row's stddev.
    """

    p_size: int = 30_000
    n_attack: int = 100
    c_rounds: int = 8
    lbfgs_maxiter: int = 100
    attack_chunk: int = 100
    amplify_to: float = 0.1
    noise_sigma: float = 0.1

    PRESETS: typing.ClassVar = {
        "quick": dict(preset_name="quick", dataset=idata.SAMPLE, batch=50, lr=3e-3, p_size=2000, n_test=1000, epochs=4, n_attack=32, c_rounds=5,
                      lbfgs_maxiter=40, attack_chunk=32),
        "full": dict(preset_name="full", p_size=30_000, epochs=50, n_attack=1000, c_rounds=10,
                     lbfgs_maxiter=200, attack_chunk=100, ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~40 s CPU", "full": "~10 min on 2 CPU cores (measured 502 s)"}

    def validate(self) -> None:
        super().validate()
        require(self.p_size >= self.batch, f"p_size ({self.p_size}) must be >= batch ({self.batch})")
        require(self.n_train == 0, "n_train is not used here: P1/P2 come from the whole training set; set p_size")
        require(self.n_attack >= 1 and (self.n_test == 0 or self.n_attack <= self.n_test),
                f"n_attack must be between 1 and n_test (got {self.n_attack})")
        require(self.amplify_to > 0 and self.noise_sigma > 0, "amplify_to and noise_sigma must be positive")
        require(self.c_rounds >= 1 and self.lbfgs_maxiter >= 1 and self.attack_chunk >= 1,
                "c_rounds, lbfgs_maxiter and attack_chunk must be >= 1")


def scale_perturbation(x: np.ndarray, x_adv: np.ndarray, stddev: float) -> np.ndarray:
    """``clip(x + r · stddev / sqrt(mean r²), 0, 1)`` per example, ``r = x_adv − x`` (r = 0 stays 0)."""
    r = (x_adv - x).reshape(x.shape[0], -1)
    rms = np.sqrt(np.mean(r * r, axis=1, keepdims=True))
    scale = np.where(rms > 0, stddev / np.where(rms > 0, rms, 1.0), 0.0)
    return np.clip(x + (r * scale).reshape(x.shape), 0.0, 1.0).astype(np.float32)


@register("szegedy-cross-training", SzegedyCrossTrainingConfig,
          "Szegedy Tables 3-4: transfer between models trained on disjoint halves P1, P2",
          table=lambda s: format_cross_training(s))
def run_cross_training(cfg: SzegedyCrossTrainingConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    full = idata.load_dataset(cfg.dataset, cfg.data_dir)
    full = idata.take(full, None, cfg.n_test or None)
    k = named_keys(cfg.seed, ("split", "noise"))
    p1, p2 = idata.split_p1_p2(full, k["split"], cfg.p_size)
    parts = {"P1": p1, "P2": p2}
    x_att, y_att = full.x_test[:cfg.n_attack], full.y_test[:cfg.n_attack]
    models, stats = {}, {}
    for name, part in CROSS_MODELS:
        d = parts[part]
        recipe, variables, info = train_cached(cfg, run_dir, name, d.x_train, d.y_train, progress=progress)
        ex = cached_examples(run_dir, name, lambda: lbfgs_examples(
            recipe, variables, x_att, y_att, key=named_keys(cfg.seed, (f"attack/{name}",))[f"attack/{name}"],
            c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=cfg.attack_chunk))
        models[name] = {"recipe": recipe, "variables": variables, "examples": ex}
        stats[name] = {"trained_on": part, "train_error": itrain.evaluate(recipe.module, variables, d.x_train, d.y_train).error,
                       "test_error": itrain.evaluate(recipe.module, variables, full.x_test, full.y_test).error,
                       "params": im.count_params(variables), "train_seconds": info["train_seconds"],
                       **example_stats(ex)}
    rows = {}
    for name, m in models.items():
        ex = m["examples"]
        rows[name] = (ex["x_adv"], ex["y"], ex["success"])
    for name, m in models.items():
        ex = m["examples"]
        rows[f"{name} scaled to stddev {cfg.amplify_to:g}"] = (
            scale_perturbation(ex["x"], ex["x_adv"], cfg.amplify_to), ex["y"], ex["success"])
    rows[f"noise stddev {cfg.noise_sigma:g}"] = (gaussian_noise(k["noise"], x_att, cfg.noise_sigma), y_att,
                                                 np.ones(y_att.shape, bool))
    rows["clean (no perturbation)"] = (x_att, y_att, np.ones(y_att.shape, bool))
    matrix = transfer_matrix(models, rows)
    summary = base_summary(cfg, run_dir, full, t0)
    summary["dataset_detail"] = {**full.describe(), "subset": f"P1/P2 of {cfg.p_size} each", "train_size": 2 * cfg.p_size}
    summary.update({
        "models": stats,
        "transfer_error_rate": matrix,
        "amplify_to_stddev": cfg.amplify_to, "noise_stddev": cfg.noise_sigma,
        "transfer_definition": "error rate (prediction != true label) of the column model on the row's "
                               "examples (successful L-BFGS examples of the row model, rescaled, or noise)",
        "paper_table4": {f"{r} -> {c}": v for (r, c), v in PAPER_TABLE4.items()},
        "paper_noise_error_range": list(PAPER_TABLE4_NOISE),
        "paper_fc100_distortion": PAPER_TABLE3_DISTORTION_FC100,
        "paper_source": "Szegedy et al. 2013, Tables 3-4 (MNIST; partly secondary per PAPERS.md)",
    })
    return finish_summary(run_dir, summary, t0)


def format_cross_training(s: dict) -> str:
    names = [n for n, _ in CROSS_MODELS]
    cols = [n for n, _ in in_order(s["models"], names)]
    rows = [[f"{n} (on {r['trained_on']})", pct(r["train_error"]), pct(r["test_error"]),
             num(r["mean_distortion"]) + (f" ({num(s['paper_fc100_distortion'])})" if n == "FC100-100-10" else "")]
            for n, r in in_order(s["models"], names)]
    t3 = render_table(s, "models on P1 / P2 (Szegedy Table 3)", ["model", "train err", "test err", "distortion (paper)"], rows)
    rows = []
    row_order = names + [f"{n} scaled to stddev {s['amplify_to_stddev']:g}" for n in names] + \
        [f"noise stddev {s['noise_stddev']:g}"]
    for row, rates in in_order(s["transfer_error_rate"], row_order):
        cells = []
        for c in cols:
            paper = s["paper_table4"].get(f"{row} -> {c}")
            if paper is None and row.startswith("noise"):
                lo, hi = s["paper_noise_error_range"]
                paper_s = f" ({pct(lo)}-{pct(hi)})"
            else:
                paper_s = f" ({pct(paper)})" if paper is not None else ""
            cells.append(pct(rates[c]) + paper_s)
        rows.append([row] + cells + [str(rates["_count"])])
    t4 = render_table(s, "cross-training-set transfer: error of column model (Szegedy Table 4)",
                      ["examples \\ model"] + cols + ["n"], rows,
                      ["ours (paper in parentheses where PAPERS.md gives it);", f"paper: {s['paper_source']}"])
    return t3 + "\n\n" + t4


# =========================================================================== spectral analysis

SPECTRAL_MODELS = ("FC10(1e-4)", "FC10(1)", "FC100-100-10", "FC200-200-10", "AE400-10", "conv")
# Szegedy et al. 2013, Table 5: per-layer upper bounds of AlexNet on ImageNet (secondary). Not
# comparable to MNIST models; shown for scale only.
PAPER_TABLE5_ALEXNET = (2.75, 10.0, 7.0, 7.5, 11.0, 3.12, 4.0, 4.0)


@dataclasses.dataclass(frozen=True)
class SzegedySpectralConfig(ImageConfig):
    """Per-layer Lipschitz bounds of trained models (Szegedy §4.3). ``models``: paper names
    (``conv`` is the small conv net with ``conv_channels``); ``pretrain_epochs``: AE400-10's
    autoencoder stage; ``n_probe`` test points for the measured Jacobian lower bound
    (``power_iters`` power iterations each)."""

    models: tuple[str, ...] = SPECTRAL_MODELS
    pretrain_epochs: int = 5
    n_probe: int = 200
    power_iters: int = 30
    conv_channels: tuple[int, ...] = (16, 32)

    PRESETS: typing.ClassVar = {
        "quick": dict(preset_name="quick", dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=3000, n_test=500, epochs=3,
                      pretrain_epochs=2, n_probe=64, power_iters=20, conv_channels=(8, 16)),
        "full": dict(preset_name="full", epochs=50, pretrain_epochs=50, n_probe=1000, power_iters=50,
                     ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~40 s CPU", "full": "~35 min on one CPU core (measured 2,029 s, of which the conv net's 50 epochs 1,925 s; "
                                                          "the five dense models are szegedy-table1 full's, seconds with its params-*.npz)"}

    def validate(self) -> None:
        super().validate()
        require(len(self.models) >= 1 and len(set(self.models)) == len(self.models),
                f"models must name distinct models (got {self.models})")
        for m in self.models:
            try:
                im.paper_model(m)
            except ValueError as e:
                require(False, str(e))
        require(self.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0 (got {self.pretrain_epochs})")
        require(self.n_probe >= 1 and self.power_iters >= 1, "n_probe and power_iters must be >= 1")
        require(self.n_test == 0 or self.n_probe <= self.n_test,
                f"n_probe ({self.n_probe}) must not exceed n_test ({self.n_test})")
        require(len(self.conv_channels) == 2 and all(c >= 1 for c in self.conv_channels),
                f"conv_channels must be two positive widths (got {self.conv_channels})")


def _activation_after(recipe: im.ModelRecipe, layer: str) -> tuple[str, float]:
    """The nonlinearity after ``layer`` and its Lipschitz constant."""
    mod = recipe.module
    if isinstance(mod, im.MLP):
        last = f"dense_{len(mod.features)}"
        return ("none (logits)", 1.0) if layer == last else (mod.activation, 0.25 if mod.activation == "sigmoid" else 1.0)
    if isinstance(mod, im.AutoencoderClassifier):
        return ("sigmoid", 0.25) if layer == "encoder" else ("none (logits)", 1.0)
    if isinstance(mod, im.ConvNet):
        return {"conv_0": ("relu + 2x2 max-pool", 1.0), "conv_1": ("relu", 1.0),
                "dense_0": ("relu", 1.0)}.get(layer, ("none (logits)", 1.0))
    if isinstance(mod, im.Maxout):
        return ("max over pieces", 1.0) if layer.startswith("maxout") else ("none (logits)", 1.0)
    return ("none (logits)", 1.0)


def layer_bounds(recipe: im.ModelRecipe, variables) -> list[dict]:
    """Per-layer upper bounds on the classification path, in forward order: ``{"layer", "kind",
    "shape", "bound", "activation", "activation_lipschitz"}`` (Szegedy §4.3; theory.* in float64)."""
    specs = recipe.module.conv_specs() if isinstance(recipe.module, im.ConvNet) else {}
    out = []
    with jax.enable_x64(True):
        for path, w in im.decayed_kernels(variables["params"]):
            w64 = jnp.asarray(np.asarray(w, np.float64))
            base = path.split("/")[-1]
            if w.ndim == 4:
                shape_in, stride, padding = specs[base]
                bound = float(theory.conv_lipschitz(w64, stride=stride, input_shape=shape_in, padding=padding))
                kind = f"conv {w.shape[0]}x{w.shape[1]} s{stride} {padding}"
            else:
                bound = float(theory.dense_lipschitz(w64))
                kind = "dense" if not base.startswith("maxout") else "maxout (stacked pieces)"
            act, lip = _activation_after(recipe, base)
            out.append({"layer": path, "kind": kind, "shape": list(w.shape), "bound": bound,
                        "activation": act, "activation_lipschitz": lip})
    return out


def jacobian_norms(recipe: im.ModelRecipe, variables, x: np.ndarray, *, key: jax.Array, iters: int) -> np.ndarray:
    """``‖∂logits/∂x‖₂`` at each ``x`` by power iteration on JᵀJ (jvp/vjp): local Lipschitz constants,
    each a lower bound on the global one."""
    f = im.apply_fn(recipe.module)

    @jax.jit
    def one(variables, x0, k):
        g = lambda xx: f(variables, xx)  # noqa: E731
        v = jax.random.normal(k, x0.shape)

        def body(_, v):
            v = v / jnp.linalg.norm(v)
            _, jv = jax.jvp(g, (x0,), (v,))
            _, vjp = jax.vjp(g, x0)
            return vjp(jv)[0]
        v = jax.lax.fori_loop(0, iters, body, v)
        v = v / jnp.linalg.norm(v)
        return jnp.linalg.norm(jax.jvp(g, (x0,), (v,))[1])

    batched = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    xf = jnp.asarray(x.reshape(x.shape[0], -1))
    return np.asarray(batched(variables, xf, jax.random.split(key, x.shape[0])))


@register("szegedy-spectral", SzegedySpectralConfig,
          "Szegedy §4.3: per-layer upper Lipschitz bounds of trained models (dense and conv)",
          table=lambda s: format_spectral(s))
def run_spectral(cfg: SzegedySpectralConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    x_probe = ds.x_test[:cfg.n_probe]
    results = {}
    for name in cfg.models:
        recipe, variables, info = train_cached(cfg, run_dir, name, ds.x_train, ds.y_train, progress=progress,
                                               conv_channels=cfg.conv_channels)
        layers = layer_bounds(recipe, variables)
        product = float(np.prod([l["bound"] for l in layers]))
        product_act = float(np.prod([l["bound"] * l["activation_lipschitz"] for l in layers]))
        jn = jacobian_norms(recipe, variables, x_probe, key=named_keys(cfg.seed, (f"probe/{name}",))[f"probe/{name}"],
                            iters=cfg.power_iters)
        logits = itrain.predict_logits(recipe.module, variables, x_probe)
        srt = np.sort(logits, axis=1)
        margin = srt[:, -1] - srt[:, -2]
        # z_i − z_j has Lipschitz constant ≤ √2·L, so no L2 perturbation below margin/(√2 L) flips the class
        certified = margin / (math.sqrt(2.0) * product_act)
        results[name] = {
            "layers": layers, "upper_bound_product": product,
            "upper_bound_product_with_activations": product_act,
            "measured_max_jacobian_norm": float(jn.max()), "measured_mean_jacobian_norm": float(jn.mean()),
            "bound_holds": bool(jn.max() <= product_act * (1 + 1e-4)),
            "mean_certified_l2_radius": float(certified.mean()),
            "test_error": itrain.evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
            "train_seconds": info["train_seconds"],
        }
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "models": results,
        "definitions": {
            "upper_bound_product": "product of per-layer operator norms, activations counted as 1 (Szegedy §4.3)",
            "upper_bound_product_with_activations": "same, times 1/4 per sigmoid (its Lipschitz constant)",
            "measured_max_jacobian_norm": f"max over {cfg.n_probe} test points of ||d logits/dx||_2 (a lower bound)",
            "mean_certified_l2_radius": "mean of (top-1 minus top-2 logit) / (sqrt(2) * bound): "
                                        "no L2 perturbation smaller than this can change the class",
        },
        "paper_table5_alexnet_per_layer": list(PAPER_TABLE5_ALEXNET),
        "paper_source": "Szegedy et al. 2013, Table 5 (AlexNet on ImageNet, secondary); no MNIST values in the paper",
    })
    return finish_summary(run_dir, summary, t0)


def format_spectral(s: dict) -> str:
    rows = []
    for name, r in in_order(s["models"], SPECTRAL_MODELS):
        per = " × ".join(f"{l['bound']:.3g}" for l in r["layers"])
        rows.append([name, per, f"{r['upper_bound_product']:.3g}", f"{r['upper_bound_product_with_activations']:.3g}",
                     f"{r['measured_max_jacobian_norm']:.3g}", f"{r['mean_certified_l2_radius']:.2g}",
                     pct(r["test_error"])])
    return render_table(s, "upper Lipschitz bounds per layer (Szegedy §4.3)",
                        ["model", "per-layer bounds", "product", "× act.", "measured ‖J‖ (lower)",
                         "certified L2 radius", "test err"], rows,
                        [f"paper (AlexNet/ImageNet, Table 5, for scale only): "
                         f"{', '.join(f'{v:g}' for v in s['paper_table5_alexnet_per_layer'])}",
                         "bounds are loose: measured ≤ bound always; a large bound does not prove that "
                         "adversarial examples exist, a small one would rule them out"])


# =========================================================================== unit analysis


@dataclasses.dataclass(frozen=True)
class SzegedyUnitsConfig(ImageConfig):
    """Szegedy §3: images maximising a hidden unit vs a random direction of the same layer.

    ``model``: whose last hidden layer is analysed; ``n_directions`` units and as many random
    directions; ``top_k`` images per direction, searched among the first ``n_search`` test images.
    """

    model: str = "conv"
    n_directions: int = 8
    top_k: int = 8
    n_search: int = 10_000
    conv_channels: tuple[int, ...] = (16, 32)

    PRESETS: typing.ClassVar = {
        "quick": dict(preset_name="quick", dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=3000, n_test=1000, epochs=3, n_directions=4, top_k=8,
                      n_search=1000, conv_channels=(8, 16)),
        "full": dict(preset_name="full", epochs=20, n_directions=8, top_k=8, n_search=10_000, ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~30 s CPU", "full": "~20 min on one CPU core (measured 1,112 s: the conv net, 20 epochs at 30-55 s)"}

    def validate(self) -> None:
        super().validate()
        try:
            im.paper_model(self.model)
        except ValueError as e:
            require(False, str(e))
        require(self.model not in ("logreg", "rbf") and not self.model.startswith("FC10("),
                f"model {self.model!r} has no hidden layer; use conv, an FC net, AE400-10 or maxout")
        require(self.n_directions >= 1 and self.top_k >= 1, "n_directions and top_k must be >= 1")
        require(self.n_search >= self.top_k, f"n_search ({self.n_search}) must be >= top_k ({self.top_k})")
        require(self.n_test == 0 or self.n_search <= self.n_test,
                f"n_search ({self.n_search}) must not exceed n_test ({self.n_test})")


def label_purity(labels: np.ndarray) -> float:
    """Fraction of ``labels`` equal to their most common value."""
    return float(np.bincount(labels, minlength=10).max() / labels.size)


@register("szegedy-units", SzegedyUnitsConfig,
          "Szegedy §3: top test images for single units vs random directions (image grids, label purity)",
          table=lambda s: format_units(s))
def run_units(cfg: SzegedyUnitsConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    recipe, variables, info = train_cached(cfg, run_dir, cfg.model, ds.x_train, ds.y_train, progress=progress,
                                           conv_channels=cfg.conv_channels)
    x, y = ds.x_test[:cfg.n_search], ds.y_test[:cfg.n_search]
    feats = np.concatenate([np.asarray(jax.jit(im.features_fn(recipe.module))(variables, x[s:s + 1000]))
                            for s in range(0, x.shape[0], 1000)])
    h = feats.shape[1]
    k = named_keys(cfg.seed, ("units", "directions"))
    # units that are active somewhere (a dead ReLU unit has no maximising image)
    alive = np.flatnonzero(feats.max(axis=0) > feats.min(axis=0))
    units = np.asarray(jax.random.choice(k["units"], alive, (min(cfg.n_directions, alive.size),), replace=False))
    v = np.array(jax.random.normal(k["directions"], (cfg.n_directions, h)))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    proj_units = feats[:, units]                   # ⟨φ(x), e_i⟩
    proj_random = feats @ v.T                      # ⟨φ(x), v⟩
    top_u = np.argsort(-proj_units, axis=0)[:cfg.top_k].T
    top_r = np.argsort(-proj_random, axis=0)[:cfg.top_k].T
    pur_u = [label_purity(y[i]) for i in top_u]
    pur_r = [label_purity(y[i]) for i in top_r]
    names = idata.CLASS_NAMES[ds.name]
    fig = image_grid_figure([x[i] for i in top_u] + [x[i] for i in top_r],
                            [f"unit {u}" for u in units] + [f"random v{j}" for j in range(len(top_r))])
    run_dir.save_figure("units_vs_random_directions", fig)
    run_dir.save_arrays("units", units=units, random_directions=v, top_unit_images=top_u, top_random_images=top_r)
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "model": cfg.model, "hidden_units": int(h), "test_error": itrain.evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
        "units": units.tolist(),
        "unit_label_purity": pur_u, "random_direction_label_purity": pur_r,
        "unit_label_purity_mean": float(np.mean(pur_u)), "random_direction_label_purity_mean": float(np.mean(pur_r)),
        "chance_label_purity_reference": float(np.mean([label_purity(y[np.asarray(jax.random.choice(
            jax.random.fold_in(k["units"], 100 + j), x.shape[0], (cfg.top_k,), replace=False))]) for j in range(32)])),
        "top_unit_labels": [[names[c] for c in y[i]] for i in top_u],
        "top_random_labels": [[names[c] for c in y[i]] for i in top_r],
        "figure": "units_vs_random_directions.png",
        "paper_claim": "images maximising a single unit look as semantically coherent as those maximising a "
                       "random direction (qualitative; Szegedy §3)",
    })
    return finish_summary(run_dir, summary, t0)


def format_units(s: dict) -> str:
    rows = [["single units e_i", num(s["unit_label_purity_mean"], ".2f"), "coherent"],
            ["random directions v", num(s["random_direction_label_purity_mean"], ".2f"), "equally coherent"],
            ["random images (chance)", num(s["chance_label_purity_reference"], ".2f"), "-"]]
    return render_table(s, f"unit analysis of {s['model']}'s last hidden layer ({s['hidden_units']} units)",
                        ["top-k images of", "label purity (ours)", "paper (qualitative)"], rows,
                        ["label purity = fraction of the top-k images sharing their most common label",
                         f"image grids: {s['figure']}", f"paper: {s['paper_claim']}"])


# =========================================================================== adversarial training

PAPER_ADV_TRAINING = {"weight decay only": 0.016, "adversarial pool": 0.012, "dropout (for reference)": 0.013}


@dataclasses.dataclass(frozen=True)
class SzegedyAdvTrainingConfig(ImageConfig):
    """Szegedy §4.2: FC100-100-10 with weight decay only vs with a refreshed pool of L-BFGS
    adversarial examples (``pool_size`` examples regenerated every ``refresh_every`` epochs from
    random training images against the current model, appended to the training set; until the
    first refresh the pool holds clean copies, since an untrained model has no meaningful
    adversarial examples)."""

    pool_size: int = 10_000
    refresh_every: int = 1
    n_attack: int = 200
    c_rounds: int = 8
    lbfgs_maxiter: int = 100
    attack_chunk: int = 100

    PRESETS: typing.ClassVar = {
        "quick": dict(preset_name="quick", dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=3000, n_test=1000, epochs=4, pool_size=64, refresh_every=2,
                      n_attack=16, c_rounds=4, lbfgs_maxiter=30, attack_chunk=16, ckpt_every=2),
        "full": dict(preset_name="full", epochs=50, pool_size=10_000, refresh_every=5, n_attack=1000,
                     c_rounds=8, lbfgs_maxiter=100, attack_chunk=100, ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~40 s CPU", "full": "~45 min on one CPU core (measured 2,541 s: 9 refreshes of 10,000 L-BFGS examples)"}

    def validate(self) -> None:
        super().validate()
        require(self.pool_size >= 1 and self.refresh_every >= 1, "pool_size and refresh_every must be >= 1")
        require(self.ckpt_every % self.refresh_every == 0,
                f"ckpt_every ({self.ckpt_every}) must be a multiple of refresh_every ({self.refresh_every}) "
                f"so a resumed run regenerates the same pool")
        require(self.n_attack >= 1 and (self.n_test == 0 or self.n_attack <= self.n_test),
                "n_attack must be between 1 and n_test")
        require(self.c_rounds >= 1 and self.lbfgs_maxiter >= 1 and self.attack_chunk >= 1,
                "c_rounds, lbfgs_maxiter and attack_chunk must be >= 1")


@register("szegedy-adversarial-training", SzegedyAdvTrainingConfig,
          "Szegedy §4.2: FC100-100-10 trained with a refreshed pool of L-BFGS examples vs weight decay alone",
          table=lambda s: format_adv_training(s))
def run_adv_training(cfg: SzegedyAdvTrainingConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    name = "FC100-100-10"
    k = named_keys(cfg.seed, ("pool", "attack"))
    chunk = min(cfg.attack_chunk, cfg.pool_size)

    def make_pool(recipe):
        def augment(epoch, variables):
            kk = jax.random.fold_in(k["pool"], epoch)
            idx = np.asarray(jax.random.choice(kk, ds.x_train.shape[0], (cfg.pool_size,), replace=False))
            if epoch == 0:
                # the model is untrained: its "adversarial examples" would be noise. The pool starts
                # as clean copies (a fixed size keeps one compilation) and is attacked from the
                # first refresh on.
                run_dir.log_metrics({"model": f"{name} + adversarial pool", "pool_refresh_epoch": 0,
                                     "pool_attack_success_rate": None, "pool_mean_distortion": None,
                                     "pool": "clean copies (untrained model)"})
                return ds.x_train[idx], ds.y_train[idx]
            ex = lbfgs_examples(recipe, variables, ds.x_train[idx], ds.y_train[idx], key=jax.random.fold_in(kk, 1),
                                c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=chunk)
            # failed attacks fall back to the clean image: the pool has a fixed size (one compilation)
            x_pool = np.where(ex["success"][:, None, None], ex["x_adv"], ex["x"])
            run_dir.log_metrics({"model": f"{name} + adversarial pool", "pool_refresh_epoch": epoch,
                                 "pool_attack_success_rate": float(ex["success"].mean()),
                                 "pool_mean_distortion": float(ex["distortion"][ex["success"]].mean())
                                 if ex["success"].any() else None})
            return x_pool, ex["y"]
        return augment

    rows = {}
    x_att, y_att = ds.x_test[:cfg.n_attack], ds.y_test[:cfg.n_attack]
    for label, pooled in (("weight decay only", False), ("adversarial pool", True)):
        recipe = im.paper_model(name)
        kw = {"augment": make_pool(recipe), "refresh_every": cfg.refresh_every} if pooled else {}
        run_name = name if not pooled else f"{name}+pool"
        settings = itrain.settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr)
        cached = itrain.load_params(run_dir, run_name)
        t1 = time.time()
        if cached is None:
            variables = itrain.train_recipe(recipe, settings, ds.x_train, ds.y_train,
                                            key=model_key(cfg.seed, name),   # same init and order for both
                                            ckpt_dir=run_dir.ckpt_dir / itrain._safe(run_name),
                                            ckpt_every=cfg.ckpt_every, progress=progress,
                                            on_epoch=lambda e, r, n=run_name: run_dir.log_metrics({"model": n, **r}),
                                            **kw)
            itrain.save_params(run_dir, run_name, variables)
        else:
            variables = cached
        train_s = time.time() - t1
        ex = cached_examples(run_dir, run_name, lambda: lbfgs_examples(
            recipe, variables, x_att, y_att, key=k["attack"], c_rounds=cfg.c_rounds,
            maxiter=cfg.lbfgs_maxiter, chunk=min(cfg.attack_chunk, cfg.n_attack)))
        fg = attacks.fgsm(im.apply_fn(recipe.module), jnp.asarray(x_att.reshape(len(x_att), -1)), jnp.asarray(y_att),
                          eps=0.1, bounds=(0.0, 1.0), params=variables)
        rows[label] = {"test_error": itrain.evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
                       "train_error": itrain.evaluate(recipe.module, variables, ds.x_train, ds.y_train).error,
                       "fgsm_eps0.1_error": float(np.mean(np.asarray(fg.success))),
                       "train_seconds": round(train_s, 3), **example_stats(ex)}
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "model": name, "variants": rows, "pool_size": cfg.pool_size, "refresh_every": cfg.refresh_every,
        "paper_test_error": PAPER_ADV_TRAINING,
        "paper_source": "Szegedy et al. 2013, §4.2 (MNIST; test error < 1.2% with the pool, 1.6% weight decay "
                        "alone, ~1.3% dropout; secondary per PAPERS.md)",
    })
    return finish_summary(run_dir, summary, t0)


def format_adv_training(s: dict) -> str:
    rows = []
    for label, r in in_order(s["variants"], ["weight decay only", "adversarial pool"]):
        paper = s["paper_test_error"].get(label)
        rows.append([label, ("<" if label == "adversarial pool" else "") + pct(paper), pct(r["test_error"]),
                     num(r["mean_distortion"]), pct(r["fgsm_eps0.1_error"])])
    return render_table(s, f"{s['model']} with and without an adversarial pool (Szegedy §4.2)",
                        ["training", "test err paper", "ours", "L-BFGS distortion (ours)", "FGSM ε=0.1 err (ours)"],
                        rows, [f"paper: {s['paper_source']}",
                               f"pool: {s['pool_size']} L-BFGS examples refreshed every {s['refresh_every']} epoch(s)"])
