"""``sphere-relu``: a ReLU+BatchNorm net on the two spheres (Gilmer et al. 2018, §3).

Train 2 × 1000 ReLU units with BatchNorm on the hidden layers (sigmoid cross-entropy, Adam 1e-4,
batch 50, online data), measure the error rate per sphere on ``eval_samples`` points each, and
attack ``attack_samples`` inner-sphere points on and off the manifold.

    spheres run sphere-relu --preset quick     # d = 20, 2 × 128 units, 3,000 steps: ~1 min on CPU
    spheres run sphere-relu --preset paper     # the paper's recipe: 10^6 steps, 10^7 points per sphere

Expected (quick): no error in 10^5 points per sphere; the manifold attack finds no error from the
100 attacked points.
"""

from __future__ import annotations

import dataclasses
import typing

from ..paper import PaperRow
from ..results import RunDir
from . import _gilmer, register
from ._sphere import PAPER_RECIPE, SphereTrainConfig, run_sphere_training, training_table

@dataclasses.dataclass(frozen=True)
class ReluConfig(SphereTrainConfig):
    PRESETS: typing.ClassVar = {
        "quick": dict(model="relu", d=20, widths=(128, 128), batch=50, steps=3000, chunk_steps=500,
                      ckpt_every=1000, eval_samples=100_000, attack_samples=100, attack_steps=300,
                      worst_case_steps=300),
        "medium": dict(model="relu", d=500, widths=(1000, 1000), batch=50, steps=100_000,
                       chunk_steps=1000, ckpt_every=10_000, eval_samples=1_000_000),
        "paper": dict(model="relu", widths=(1000, 1000), **PAPER_RECIPE),
    }
    COST: typing.ClassVar = {"quick": "~1 min CPU", "medium": "~10 min CPU",
                             "paper": "~1-2 h on 2 CPU cores; minutes on a GPU"}


def paper_rows(s: dict) -> list[PaperRow]:
    return [_gilmer.error_row(s)] + _gilmer.attack_rows(s)


@register("sphere-relu", ReluConfig,
          "ReLU+BatchNorm net on the two spheres (Gilmer §3): train, error rate per sphere",
          table=training_table, paper_rows=paper_rows, paper="gilmer")
def run(cfg: ReluConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    return run_sphere_training(cfg, run_dir, progress=progress)
