"""``szegedy-units``: test images that maximise single units vs random directions (Szegedy et al. 2013, §3).

Trains ``model`` (by default the small conv net) and, in its last hidden layer φ, picks
``n_directions`` live units eᵢ and as many random unit directions v. For each it shows the
``top_k`` test images (of the first ``n_search``) that maximise ⟨φ(x), eᵢ⟩ or ⟨φ(x), v⟩ as an
image grid, and puts a number on each grid: its label purity (the share of its images with the
most common label), beside the purity of random images (chance).

    spheres run szegedy-units --preset quick     # the shipped Fashion-MNIST sample: ~30 s CPU
    spheres run szegedy-units --preset paper     # all of Fashion-MNIST, 20 epochs, 8 + 8 directions

Expected (quick, seed 0): label purity 0.97 for single units and 0.84 for random directions,
against 0.32 for random images: both kinds of direction pick out coherent images.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import jax
import numpy as np

from ..config import require
from ..images import data as idata
from ..images import models as im
from ..images.evaluate import evaluate, label_purity
from ..images.plots import image_grid_figure
from ..keys import named_keys
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Tables, difference_over_seeds, num, over_seeds
from . import register
from ._image import ImageConfig, base_summary, finish_summary, load_data, tables, train_cached
from ._szegedy import paper_value

PAPER = paper_value("top images of single units vs random directions",
                    "equally semantically coherent (qualitative: image grids)", "§3", "unverified")


@dataclasses.dataclass(frozen=True)
class UnitsConfig(ImageConfig):
    """Szegedy §3: images maximising a hidden unit vs a random direction of the same layer.

    ``model``: whose last hidden layer is analysed; ``n_directions`` units and as many random
    directions; ``top_k`` images per direction, searched among the first ``n_search`` test images.
    """

    # evaluation-only: a finished run re-evaluates with new values, without retraining
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('n_directions', 'top_k', 'n_search')

    model: str = "conv"
    n_directions: int = 8
    top_k: int = 8
    n_search: int = 10_000
    conv_channels: tuple[int, ...] = (16, 32)

    PRESETS: typing.ClassVar = {
        "quick": dict(dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=3000, n_test=1000, epochs=3, n_directions=4,
                      top_k=8, n_search=1000, conv_channels=(8, 16)),
        "medium": dict(epochs=5, n_directions=8, top_k=8, n_search=10_000, ckpt_every=5),
        "paper": dict(epochs=20, n_directions=8, top_k=8, n_search=10_000, ckpt_every=5),
    }
    COST: typing.ClassVar = {"quick": "~30 s CPU",
                             "medium": "~5 min CPU (estimate: the conv net, 5 epochs on 60k)",
                             "paper": "~20 min on one CPU core (measured 1,112 s: the conv net, 20 epochs)"}

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


@register("szegedy-units", UnitsConfig,
          "Szegedy §3: top test images for single units vs random directions (image grids, label purity)",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="szegedy",
          seed_rows=lambda ss: seed_rows(ss))
def run(cfg: UnitsConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    recipe, variables, info = train_cached(cfg, run_dir, cfg.model, ds.x_train, ds.y_train, progress=progress,
                                           conv_channels=cfg.conv_channels)
    x, y = ds.x_test[:cfg.n_search], ds.y_test[:cfg.n_search]
    features = jax.jit(im.features_fn(recipe.module))
    feats = np.concatenate([np.asarray(features(variables, x[s:s + 1000])) for s in range(0, x.shape[0], 1000)])
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
    chance = [label_purity(y[np.asarray(jax.random.choice(jax.random.fold_in(k["units"], 100 + j), x.shape[0],
                                                          (cfg.top_k,), replace=False))]) for j in range(32)]
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "model": cfg.model, "hidden_units": int(h),
        "test_error": evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
        "units": units.tolist(),
        "unit_label_purity": pur_u, "random_direction_label_purity": pur_r,
        "unit_label_purity_mean": float(np.mean(pur_u)), "random_direction_label_purity_mean": float(np.mean(pur_r)),
        "chance_label_purity_reference": float(np.mean(chance)),
        "top_unit_labels": [[names[c] for c in y[i]] for i in top_u],
        "top_random_labels": [[names[c] for c in y[i]] for i in top_r],
        "figure": "units_vs_random_directions.png",
    })
    return finish_summary(run_dir, summary, t0)


def table(s: dict) -> Tables:
    rows = [["single units e_i", num(s["unit_label_purity_mean"], ".2f"), "coherent"],
            ["random directions v", num(s["random_direction_label_purity_mean"], ".2f"), "equally coherent"],
            ["random images (chance)", num(s["chance_label_purity_reference"], ".2f"), "-"]]
    return tables(s, f"unit analysis of {s['model']}'s last hidden layer ({s['hidden_units']} units)",
                  ["top-k images of", "label purity (ours)", "paper (qualitative)"], rows,
                  ["label purity = fraction of the top-k images sharing their most common label",
                   f"image grids: {s['figure']}", f"paper: {PAPER.cite()}"])


def purity_difference(s: dict) -> str:
    """Units minus random directions in mean label purity, with the exact two-sided permutation
    p-value over the grids (every split of the pooled purities enumerated: SciPy's
    ``permutation_test`` with ``n_resamples=inf``), and what it allows one to say."""
    from scipy import stats

    u, r = np.asarray(s["unit_label_purity"]), np.asarray(s["random_direction_label_purity"])
    test = stats.permutation_test((u, r), lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
                                  permutation_type="independent", n_resamples=np.inf, alternative="two-sided")
    told = test.pvalue < 0.05
    return (f"difference {test.statistic:+.2f}, exact permutation p = {test.pvalue:.2g} over {len(u)} + {len(r)} "
            f"grids (one seed): " + ("units are more coherent, unlike the paper's claim" if told and test.statistic > 0
                                     else "random directions are more coherent" if told else
                                     "not told apart, as the paper says (weak evidence: only a large "
                                     "difference could show at this number of grids)"))


def paper_rows(s: dict) -> list[PaperRow]:
    return [PaperRow(PAPER, f"label purity {s['unit_label_purity_mean']:.2f} (units) vs "
                            f"{s['random_direction_label_purity_mean']:.2f} (random directions), "
                            f"chance {s['chance_label_purity_reference']:.2f}; {purity_difference(s)}",
                     note=s["dataset"])]


def seed_rows(summaries: list[dict]) -> list[PaperRow]:
    """The mean label purity of the units' and the random directions' top images over several seeds
    (one trained net each, same config otherwise) with the t interval across seeds
    (`spheres.tables.over_seeds`), and units minus random directions as per-seed paired differences
    (`spheres.tables.difference_over_seeds`): the paper's "equally coherent" holds where the
    difference is not told apart from zero."""
    seeds = [s["seed"] for s in summaries]
    mean = lambda key: [s[f"{key}_label_purity_mean"] for s in summaries]  # noqa: E731
    note = f"{summaries[0]['dataset']}; purity as a share of the top-{len(summaries[0]['top_unit_labels'][0])} images"
    return [PaperRow(PAPER, over_seeds(mean("unit"), seeds), quantity="label purity of single units' top images",
                     note=note),
            PaperRow(PAPER, over_seeds(mean("random_direction"), seeds),
                     quantity="label purity of random directions' top images", note=note),
            PaperRow(PAPER, over_seeds([s["chance_label_purity_reference"] for s in summaries], seeds),
                     quantity="label purity of random images (chance)", note=note),
            PaperRow(PAPER, difference_over_seeds([u - r for u, r in zip(mean("unit"), mean("random_direction"))],
                                                  seeds),
                     quantity="units minus random directions, label purity", note=note)]
