"""``szegedy-transfer``: cross-model transfer of L-BFGS examples (Szegedy et al. 2013, Table 2).

Table 1's models and examples (the same training and attacks as ``szegedy-table1``), then the
error rate of every model on every model's successful examples, beside Gaussian noise of
stddev σ = 0.1 and 0.3 (clipped to [0, 1]) and the clean images.

    spheres run szegedy-transfer --preset quick     # the shipped Fashion-MNIST sample: ~1 min CPU
    spheres run szegedy-transfer --preset paper     # all of Fashion-MNIST, 50 epochs, 1000 attacks

Expected (quick, seed 0): 100% on the diagonal (each example reached a wrong target on its own
model); off the diagonal 22-94% over the 32 examples of each row (FC10(1) → FC10(1e-4): 87.5%, FC10(1e-4)
→ FC100-100-10: 37.5%); noise σ = 0.1 moves FC10(1e-4)'s error from 21.9% (clean) to 25%.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..images.adversarial import gaussian_noise, transfer_matrix
from ..keys import named_keys
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Tables, in_order, num, pct
from . import register
from ._image import base_summary, finish_summary, load_data, tables
from ._szegedy import ModelsConfig, paper_value, train_and_attack


def _entry(row: str, col: str, value: str) -> tuple[tuple[str, str], object]:
    on = row if row.startswith("noise") else f"{row}'s examples"
    return (row, col), paper_value(f"error of {col} on {on}", value, "Table 2", "secondary")


# (row = examples made for / noise, column = model evaluated) -> error rate; the entries PAPERS.md lists
PAPER = dict([
    _entry("FC10(1e-4)", "FC100-100-10", "2%"),
    _entry("FC10(1)", "FC10(1e-4)", "71.9%"),
    _entry("FC100-100-10", "FC10(1e-4)", "28.9%"),
    _entry("noise σ=0.1", "FC10(1e-4)", "5.0%"),
    _entry("noise σ=0.1", "FC100-100-10", "0%"),
    _entry("noise σ=0.3", "FC10(1e-4)", "15.6%"),
    _entry("noise σ=0.3", "FC100-100-10", "5%"),
])


@dataclasses.dataclass(frozen=True)
class TransferConfig(ModelsConfig):
    """Szegedy Table 2: Table 1's models and examples, evaluated on every model (fields and presets:
    `ModelsConfig`, the same as ``szegedy-table1``)."""


@register("szegedy-transfer", TransferConfig,
          "Szegedy Table 2: cross-model transfer of L-BFGS examples, with Gaussian-noise rows",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="szegedy")
def run(cfg: TransferConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    models = train_and_attack(cfg, run_dir, ds, progress=progress)
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
        "models_detail": {n: m["row"] for n, m in models.items()},
    })
    return finish_summary(run_dir, summary, t0)


def table(s: dict) -> Tables:
    cols = s["models"]
    rows = []
    for row, rates in in_order(s["transfer_error_rate"], cols + [f"noise σ={x:g}" for x in s["noise_sigmas"]]):
        cells = []
        for c in cols:
            paper = PAPER.get((row, c))
            cells.append(pct(rates[c]) + (f" ({paper.value})" if paper is not None else ""))
        dist = s["row_distortion"].get(row)
        rows.append([row] + cells + [num(dist) if dist is not None else "-", str(rates["_count"])])
    return tables(s, "cross-model transfer: error of column model on row's examples (Szegedy Table 2)",
                  ["examples for \\ model"] + cols + ["distortion", "n"], rows,
                  ["ours (paper in parentheses where PAPERS.md gives it);",
                   "paper: Szegedy et al. 2013, Table 2 (MNIST; partly secondary)",
                   "diagonal = 100% by construction (each example reached a wrong target on its own model)"])


def paper_rows(s: dict) -> list[PaperRow]:
    m = s["transfer_error_rate"]
    return [PaperRow(v, pct(m[r][c]), note=s["dataset"]) for (r, c), v in PAPER.items()
            if r in m and c in m[r]]
