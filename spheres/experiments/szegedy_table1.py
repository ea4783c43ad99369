"""``szegedy-table1``: train/test error and average minimum L-BFGS distortion (Szegedy et al. 2013, Table 1).

Trains FC10(1e-4), FC10(1e-2), FC10(1), FC100-100-10, FC200-200-10 and AE400-10 and attacks the
first ``n_attack`` test images of each with targeted box-constrained L-BFGS (``attacks.lbfgs``: a
random target ≠ the true label and ≠ the prediction, a per-example search over c); the distortion
is ``sqrt(Σ (x' − x)² / 784)``, averaged over the successful attacks.

    spheres run szegedy-table1 --preset quick     # the shipped Fashion-MNIST sample: ~1 min CPU
    spheres run szegedy-table1 --preset paper     # all of Fashion-MNIST, 50 epochs, 1000 attacks
    spheres run szegedy-table1 --preset paper --set dataset=mnist --set data_dir=DIR   # the paper's data

Expected (quick, seed 0): every attack succeeds inside the box; test error 21.3% (FC10(1e-4)),
22.4% (FC10(1e-2)), 29.6% (FC10(1)), 19.4% (FC100-100-10), 18.8% (FC200-200-10), 23.7% (AE400-10);
mean distortion 0.087 (FC10(1e-4)) to 0.155 (FC10(1)).
"""

from __future__ import annotations

import dataclasses
import time

from ..images.plots import adversarial_examples_figure
from ..paper import PaperRow
from ..results import RunDir
from ..tables import Tables, ci_note, in_order, num, pct_ci
from . import register
from ._image import base_summary, finish_summary, load_data, tables
from ._szegedy import ModelsConfig, paper_value, train_and_attack


def _table1(model: str, train: str, test: str, distortion: str) -> dict:
    return {"train_error": paper_value(f"{model} train error", train, "Table 1", "secondary"),
            "test_error": paper_value(f"{model} test error", test, "Table 1", "secondary"),
            "distortion": paper_value(f"{model} average minimum distortion", distortion, "Table 1", "secondary")}


PAPER = {
    "FC10(1e-4)": _table1("FC10(1e-4)", "6.7%", "7.4%", "0.062"),
    "FC10(1e-2)": _table1("FC10(1e-2)", "10%", "9.4%", "0.1"),
    "FC10(1)": _table1("FC10(1)", "21.2%", "20%", "0.14"),
    "FC100-100-10": _table1("FC100-100-10", "0%", "1.64%", "0.058"),
    "FC200-200-10": _table1("FC200-200-10", "0%", "1.54%", "0.065"),
    "AE400-10": _table1("AE400-10", "0.57%", "1.9%", "0.086"),
}


@dataclasses.dataclass(frozen=True)
class Table1Config(ModelsConfig):
    """Szegedy Table 1: the models, their errors and their L-BFGS examples (fields: `ModelsConfig`)."""


@register("szegedy-table1", Table1Config,
          "Szegedy Table 1: train/test error and mean minimum L-BFGS distortion per model",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="szegedy")
def run(cfg: Table1Config, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    models = train_and_attack(cfg, run_dir, ds, progress=progress)
    fig = adversarial_examples_figure({n: m["examples"] for n, m in models.items()})
    if fig is not None:
        run_dir.save_figure("adversarial_examples", fig)
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({
        "models": {n: m["row"] for n, m in models.items()},
        "distortion_definition": "sqrt(sum((x_adv - x)^2) / 784), mean over successful attacks",
        "attack": {"name": "attacks.lbfgs", "targeted": True, "targets": "random label != true label and != prediction",
                   "bounds": [0.0, 1.0], "c_rounds": cfg.c_rounds, "lbfgs_maxiter": cfg.lbfgs_maxiter,
                   "n_attacked": cfg.n_attack},
    })
    return finish_summary(run_dir, summary, t0)


def _train_test(s: dict, r: dict) -> tuple[str, str]:
    """Train and test error with their intervals (over the whole training and test sets)."""
    d = s["dataset_detail"]
    return pct_ci(r["train_error"], d["train_size"]), pct_ci(r["test_error"], d["test_size"])


def table(s: dict) -> Tables:
    rows = []
    for name, r in in_order(s["models"], list(PAPER)):
        p = PAPER.get(name)
        cite = (lambda k: p[k].value) if p else (lambda k: "-")  # noqa: E731
        train, test = _train_test(s, r)
        rows.append([name, cite("train_error"), train, cite("test_error"), test,
                     cite("distortion"), num(r["mean_distortion"]),
                     pct_ci(r["attack_success_rate"], r["n_attacked"])])
    return tables(s, "train/test error and average minimum distortion (Szegedy Table 1)",
                  ["model", "train err paper", "ours", "test err paper", "ours",
                   "distortion paper", "ours", "attack success"], rows,
                  ["paper: Szegedy et al. 2013, Table 1 (MNIST; secondary)",
                   f"distortion = {s['distortion_definition']}; {s['attack']['n_attacked']} test "
                   f"examples per model, c search {s['attack']['c_rounds']} rounds", ci_note()])


def paper_rows(s: dict) -> list[PaperRow]:
    out = []
    for name, r in in_order(s["models"], list(PAPER)):
        if name in PAPER:
            p = PAPER[name]
            train, test = _train_test(s, r)
            out += [PaperRow(p["train_error"], train, note=s["dataset"]),
                    PaperRow(p["test_error"], test, note=s["dataset"]),
                    PaperRow(p["distortion"], num(r["mean_distortion"]), note=s["dataset"])]
    return out
