"""``szegedy-transfer``: cross-model transfer of L-BFGS examples (Szegedy et al. 2013, Table 2).

Table 1's models and examples (the same training and attacks as ``szegedy-table1``), then the
error rate of every model on every model's successful examples, beside Gaussian noise of
stddev σ = 0.1 and 0.3 (clipped to [0, 1]) and the clean images.

    spheres run szegedy-transfer --preset quick     # the shipped Fashion-MNIST sample: ~1 min CPU
    spheres run szegedy-transfer --preset paper     # all of Fashion-MNIST, 50 epochs, 1000 attacks

Two controls make the comparison with the paper fair: the same matrix over the examples whose clean
image BOTH models classify correctly (a model that already errs on the clean image is not fooled by
transfer), and at matched distortion: each perturbation rescaled to the column model's own mean
minimal L-BFGS distortion before it is shown to that model (a weak model's large perturbations
would otherwise transfer by sheer size). The paper does not say whether its examples came from
training or test images: the main matrix attacks test images, and with ``train_images = N`` (every
preset: as many as ``n_attack``) every model also attacks the first N training images, reported as
a third matrix (the models fit their training images better, so these examples can transfer
differently).

Expected (quick, seed 0): 100% on the diagonal (each example reached a wrong target on its own
model); off the diagonal 22-94% over the 32 examples of each row (FC10(1) → FC10(1e-4): 87.5%, FC10(1e-4)
→ FC100-100-10: 37.5%); noise σ = 0.1 moves FC10(1e-4)'s error from 21.9% (clean) to 25%.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy as np

from ..config import require
from ..images import evaluate
from ..images.adversarial import example_stats, gaussian_noise, lbfgs_examples, transfer_matrix
from ..keys import named_keys, stream_key
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Table, Tables, ci_note, in_order, num, pct, pct_ci
from . import register
from ._image import base_summary, cached_examples, finish_summary, load_data, tables
from ._szegedy import ModelsConfig, paper_value, train_and_attack


def _entry(row: str, col: str, value: str) -> tuple[tuple[str, str], object]:
    on = row if row.startswith("noise") else f"{row}'s examples"
    return (row, col), paper_value(f"error of {col} on {on}", value, "Table 2", "secondary")


# (row = examples made for / noise, column = model evaluated) -> error rate; the entries docs/papers.md lists
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
    `ModelsConfig`, the same as ``szegedy-table1``), and ``train_images`` training images attacked
    as well (0: none)."""

    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ModelsConfig.EVAL_ONLY + ("train_images",)
    PRESETS: typing.ClassVar = {k: {**v, "train_images": v["n_attack"]} for k, v in ModelsConfig.PRESETS.items()}

    COST: typing.ClassVar = {
        "quick": "~1.5 min CPU (Fashion-MNIST sample)",
        "medium": "~10 min CPU (estimate: Table 1's models, then 200 test and 200 training images attacked)",
        "paper": "~15 min on 2 CPU cores (estimate: the run without training images took 485 s, attacks "
                 "about half of it)",
    }

    train_images: int = 0

    def validate(self) -> None:
        super().validate()
        require(self.train_images >= 0, f"train_images must be >= 0 (got {self.train_images})")
        require(self.n_train == 0 or self.train_images <= self.n_train,
                f"train_images ({self.train_images}) must not exceed n_train ({self.n_train})")


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
    both, matched = controlled_transfer(models, x_att, y_att)
    on_train = train_image_transfer(cfg, run_dir, ds, models) if cfg.train_images else None
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
        "transfer_error_rate_both_correct": both,
        "transfer_error_rate_matched_distortion": matched,
        "controls_definition": "both_correct: over the row's successful examples whose clean image the "
                               "row and column models both classify correctly; matched_distortion: the "
                               "same examples with the perturbation rescaled to the column model's own "
                               "mean minimal distortion (clipped to [0, 1])",
    })
    if on_train is not None:
        summary["train_images"] = cfg.train_images
        summary["transfer_error_rate_train_images"] = on_train
    return finish_summary(run_dir, summary, t0)


def train_image_transfer(cfg: TransferConfig, run_dir: RunDir, ds, models: dict) -> dict:
    """The transfer matrix of L-BFGS examples made from the first ``train_images`` TRAINING images
    (stream ``attack-train/NAME``, cached as ``adv-NAME-train.npz``), with each row's mean distortion
    under ``"_distortion"``."""
    x, y = ds.x_train[:cfg.train_images], ds.y_train[:cfg.train_images]
    rows, dist = {}, {}
    for name, m in models.items():
        ex = cached_examples(run_dir, f"{name}-train", lambda m=m, name=name: lbfgs_examples(
            m["recipe"], m["variables"], x, y, key=stream_key(cfg.seed, f"attack-train/{name}"),
            c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=cfg.attack_chunk), cfg)
        rows[name] = (ex["x_adv"], ex["y"], ex["success"])
        dist[name] = example_stats(ex)["mean_distortion"]
    out = transfer_matrix(models, rows)
    for name in out:
        out[name]["_distortion"] = dist[name]
    return out


def controlled_transfer(models: dict, x: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
    """``(both_correct, matched_distortion)`` matrices ``{row: {col: rate, "_n": {col: n}, "_count": n}}``:
    see the module docstring; ``_n`` is the number of examples each rate is over. Distortion is
    ``sqrt(Σ δ² / 784)``, as in Table 1."""
    clean = {n: evaluate.predictions(m["recipe"].module, m["variables"], x) == y for n, m in models.items()}
    both, matched = {}, {}
    for r, mr in models.items():
        ex = mr["examples"]
        delta = (ex["x_adv"] - x).reshape(x.shape[0], -1)
        dist = np.sqrt((delta ** 2).sum(1) / delta.shape[1])
        both[r], matched[r] = {}, {}
        both[r]["_n"] = matched[r]["_n"] = counts = {}
        for c, mc in models.items():
            mask = ex["success"] & clean[r] & clean[c]
            n = counts[c] = int(mask.sum())
            pred = evaluate.predictions(mc["recipe"].module, mc["variables"], ex["x_adv"])
            both[r][c] = float((pred[mask] != y[mask]).mean()) if n else float("nan")
            target = mc["row"]["mean_distortion"]
            scale = np.where(dist > 0, target / np.maximum(dist, 1e-12), 0.0)
            x_m = np.clip(x.reshape(x.shape[0], -1) + delta * scale[:, None], 0.0, 1.0).reshape(x.shape)
            pred_m = evaluate.predictions(mc["recipe"].module, mc["variables"], x_m.astype(np.float32))
            matched[r][c] = float((pred_m[mask] != y[mask]).mean()) if n else float("nan")
            both[r]["_count"] = matched[r]["_count"] = n      # per row: the last column's count
    return both, matched


def _cell(rates: dict, col: str) -> str:
    """A transfer error rate with its interval, over the row's ``_count`` examples."""
    return pct_ci(rates[col], rates["_count"])


def _control_cell(rates: dict, col: str) -> str:
    """A control's rate with its interval, over the cell's own ``_n`` examples; a record made before
    the counts per cell were kept (its ``_count`` is the last column's only) shows the rate alone."""
    return pct_ci(rates[col], rates["_n"][col]) if "_n" in rates else pct(rates[col])


def _control_table(s: dict, key: str, caption: str) -> Table:
    cols = s["models"]
    return Table(["examples for \\ model"] + cols,
                 [[row] + [_control_cell(rates, c) for c in cols] for row, rates in in_order(s[key], cols)],
                 caption=caption)


def table(s: dict) -> Tables:
    cols = s["models"]
    rows = []
    for row, rates in in_order(s["transfer_error_rate"], cols + [f"noise σ={x:g}" for x in s["noise_sigmas"]]):
        cells = []
        for c in cols:
            paper = PAPER.get((row, c))
            cells.append(_cell(rates, c) + (f" ({paper.value})" if paper is not None else ""))
        dist = s["row_distortion"].get(row)
        rows.append([row] + cells + [num(dist) if dist is not None else "-", str(rates["_count"])])
    out = tables(s, "cross-model transfer: error of column model on row's examples (Szegedy Table 2)",
                 ["examples for \\ model"] + cols + ["distortion", "n"], rows,
                 ["ours (paper in parentheses where the paper gives it);",
                  "paper: Szegedy et al. 2013, Table 2 (MNIST; partly secondary)",
                  "diagonal = 100% by construction (each example reached a wrong target on its own model)",
                  ci_note()])
    extra = []
    if "transfer_error_rate_both_correct" in s:
        extra = [_control_table(s, "transfer_error_rate_both_correct",
                                "Control 1: only examples whose clean image both models classify correctly"),
                 _control_table(s, "transfer_error_rate_matched_distortion",
                                "Control 2: as control 1, perturbations rescaled to the column model's own "
                                "mean minimal distortion")]
    if "transfer_error_rate_train_images" in s:
        tr = s["transfer_error_rate_train_images"]
        extra.append(Table(["examples for \\ model"] + cols + ["distortion", "n"],
                           [[row] + [_cell(rates, c) for c in cols] + [num(rates["_distortion"]), str(rates["_count"])]
                            for row, rates in in_order(tr, cols)],
                           caption=f"Training images: L-BFGS examples of the first {s['train_images']:,} "
                                   "training images; each model's successful ones, evaluated on every model"))
    return dataclasses.replace(out, tables=out.tables + tuple(extra))


def paper_rows(s: dict) -> list[PaperRow]:
    m = s["transfer_error_rate"]
    b = s.get("transfer_error_rate_both_correct", {})
    t = s.get("transfer_error_rate_matched_distortion", {})
    tr = s.get("transfer_error_rate_train_images", {})
    out = []
    for (r, c), v in PAPER.items():
        if r in m and c in m[r]:
            ours = _cell(m[r], c)
            if r in b and c in b[r]:
                ours += f"; both correct {_control_cell(b[r], c)}; matched distortion {_control_cell(t[r], c)}"
            if r in tr and c in tr[r]:
                ours += f"; from training images {_cell(tr[r], c)}"
            out.append(PaperRow(v, ours, note=s["dataset"]))
    return out
