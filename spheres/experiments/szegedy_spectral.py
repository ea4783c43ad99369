"""``szegedy-spectral``: per-layer upper Lipschitz bounds of trained models (Szegedy et al. 2013, §4.3).

For every model, the operator norm of each layer on the classification path (dense: largest
singular value, ``theory.dense_lipschitz``; convolution: from the 2-D DFT of the kernel with the
stride's aliasing, ``theory.conv_lipschitz``), their product (activations counted as 1, and
with 1/4 per sigmoid), the largest input-Jacobian norm measured on ``n_probe`` test points (a
lower bound) and the mean L2 radius the bound certifies.

    spheres run szegedy-spectral --preset quick     # the shipped Fashion-MNIST sample: ~40 s CPU
    spheres run szegedy-spectral --preset paper     # all of Fashion-MNIST, 50 epochs per model

Expected (quick, seed 0): the measured norm never exceeds the bound, and equals it for the softmax
regressions (linear); the bounds with activations run from 0.88 (FC10(1)) to 113 (the conv net,
measured 8.9), the mean certified L2 radii from 0.83 down to 0.024.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing

import numpy as np

from ..config import require
from ..images import data as idata
from ..images.adversarial import jacobian_norms, layer_bounds
from ..images.evaluate import evaluate, predict_logits
from ..keys import stream_key
from ..paper import PaperRow, PaperValue
from ..results import RunDir
from ..tables import Tables, ci_note, in_order, pct_ci
from . import register
from ._image import ImageConfig, base_summary, finish_summary, load_data, tables, train_cached
from ._szegedy import check_models

SPECTRAL_MODELS = ("FC10(1e-4)", "FC10(1)", "FC100-100-10", "FC200-200-10", "AE400-10", "conv")

# AlexNet on ImageNet: not comparable with MNIST models; shown for scale only.
PAPER = PaperValue("per-layer upper bounds of AlexNet", "2.75, 10, 7, 7.5, 11, 3.12, 4, 4", "szegedy", "Table 5",
                   "secondary", "ImageNet")


@dataclasses.dataclass(frozen=True)
class SpectralConfig(ImageConfig):
    """Per-layer Lipschitz bounds of trained models (Szegedy §4.3). ``models``: paper names
    (``conv`` is the small conv net with ``conv_channels``); ``pretrain_epochs``: AE400-10's
    autoencoder stage; ``n_probe`` test points for the measured Jacobian lower bound
    (``power_iters`` power iterations each)."""

    # evaluation-only: a finished run re-evaluates with new values, without retraining
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('n_probe', 'power_iters')

    models: tuple[str, ...] = SPECTRAL_MODELS
    pretrain_epochs: int = 5
    n_probe: int = 200
    power_iters: int = 30
    conv_channels: tuple[int, ...] = (16, 32)

    PRESETS: typing.ClassVar = {
        "quick": dict(dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=3000, n_test=500, epochs=3,
                      pretrain_epochs=2, n_probe=64, power_iters=20, conv_channels=(8, 16)),
        "medium": dict(epochs=10, pretrain_epochs=10, n_probe=200, power_iters=30, ckpt_every=5),
        "paper": dict(epochs=50, pretrain_epochs=50, n_probe=1000, power_iters=50, ckpt_every=5),
    }
    COST: typing.ClassVar = {
        "quick": "~40 s CPU",
        "medium": "~8 min CPU (estimate: the conv net's 10 epochs on 60k are most of it)",
        "paper": "~35 min on one CPU core (measured 2,029 s, of which the conv net's 50 epochs 1,925 s)",
    }

    def validate(self) -> None:
        super().validate()
        check_models(self.models)
        require(self.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0 (got {self.pretrain_epochs})")
        require(self.n_probe >= 1 and self.power_iters >= 1, "n_probe and power_iters must be >= 1")
        require(self.n_test == 0 or self.n_probe <= self.n_test,
                f"n_probe ({self.n_probe}) must not exceed n_test ({self.n_test})")
        require(len(self.conv_channels) == 2 and all(c >= 1 for c in self.conv_channels),
                f"conv_channels must be two positive widths (got {self.conv_channels})")


@register("szegedy-spectral", SpectralConfig,
          "Szegedy §4.3: per-layer upper Lipschitz bounds of trained models (dense and conv)",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="szegedy")
def run(cfg: SpectralConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
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
        jn = jacobian_norms(recipe, variables, x_probe, key=stream_key(cfg.seed, f"probe/{name}"),
                            iters=cfg.power_iters)
        logits = predict_logits(recipe.module, variables, x_probe)
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
            "test_error": evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
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
    })
    return finish_summary(run_dir, summary, t0)


def table(s: dict) -> Tables:
    rows = []
    for name, r in in_order(s["models"], SPECTRAL_MODELS):
        per = " × ".join(f"{l['bound']:.3g}" for l in r["layers"])
        rows.append([name, per, f"{r['upper_bound_product']:.3g}", f"{r['upper_bound_product_with_activations']:.3g}",
                     f"{r['measured_max_jacobian_norm']:.3g}", f"{r['mean_certified_l2_radius']:.2g}",
                     pct_ci(r["test_error"], s["dataset_detail"]["test_size"])])
    return tables(s, "upper Lipschitz bounds per layer (Szegedy §4.3)",
                  ["model", "per-layer bounds", "product", "× act.", "measured ‖J‖ (lower)",
                   "certified L2 radius", "test err"], rows,
                  [f"paper (AlexNet/ImageNet, Table 5, for scale only): {PAPER.value}",
                   "bounds are loose: measured ≤ bound always; a large bound does not prove that "
                   "adversarial examples exist, a small one would rule them out", ci_note()])


def paper_rows(s: dict) -> list[PaperRow]:
    ours = "; ".join(f"{n}: " + ", ".join(f"{l['bound']:.3g}" for l in r["layers"])
                     for n, r in in_order(s["models"], SPECTRAL_MODELS))
    return [PaperRow(PAPER, ours, note=f"our models on {s['dataset']}; not comparable, for scale only")]
