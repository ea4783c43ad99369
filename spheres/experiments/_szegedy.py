"""What the Szegedy et al. 2013 image experiments share, and nothing else.

`paper_value` makes a `spheres.paper.PaperValue` of that paper on MNIST. `ModelsConfig` and
`train_and_attack` are the models and L-BFGS examples of Table 1, which ``szegedy-table1`` reports
and ``szegedy-transfer`` evaluates across models (Table 2); `LbfgsFields` are the attack settings
of every experiment that makes L-BFGS examples.
"""

from __future__ import annotations

import dataclasses
import time
import typing

from ..config import require
from ..images import data as idata
from ..images import models as im
from ..images.adversarial import example_stats, lbfgs_examples
from ..images.evaluate import evaluate
from ..keys import stream_key
from ..paper import PaperValue, Status
from ..results import RunDir
from ._image import ImageConfig, cached_examples, train_cached


def paper_value(quantity: str, value: str, where: str, status: Status) -> PaperValue:
    """A value Szegedy et al. 2013 report on MNIST."""
    return PaperValue(quantity, value, "szegedy", where, status, "MNIST")


def attack_key(seed: int, name: str):
    """The key of model ``name``'s L-BFGS targets: stream ``attack/NAME``."""
    return stream_key(seed, f"attack/{name}")


@dataclasses.dataclass(frozen=True)
class LbfgsFields(ImageConfig):
    """The L-BFGS attack: the first ``n_attack`` test examples, ``c_rounds`` rounds of the search
    over c, ``lbfgs_maxiter`` iterations per solve, ``attack_chunk`` examples per compiled call."""

    n_attack: int = 100
    c_rounds: int = 8
    lbfgs_maxiter: int = 100
    attack_chunk: int = 100

    def validate(self) -> None:
        super().validate()
        require(self.n_attack >= 1, f"n_attack must be >= 1 (got {self.n_attack})")
        require(self.n_test == 0 or self.n_attack <= self.n_test,
                f"n_attack ({self.n_attack}) must not exceed n_test ({self.n_test})")
        require(self.c_rounds >= 1 and self.lbfgs_maxiter >= 1 and self.attack_chunk >= 1,
                "c_rounds, lbfgs_maxiter and attack_chunk must be >= 1")


def check_models(models: tuple[str, ...]) -> None:
    """Every name is a paper model (`spheres.images.models.paper_model`), once."""
    require(len(models) >= 1, "models must name at least one model")
    for m in models:
        try:
            im.paper_model(m)
        except ValueError as e:
            require(False, str(e))
    require(len(set(models)) == len(models), f"models has duplicates: {models}")


@dataclasses.dataclass(frozen=True)
class ModelsConfig(LbfgsFields):
    """Table 1's models and their L-BFGS examples (``szegedy-table1``, ``szegedy-transfer``).

    ``models``: paper names (`spheres.images.models.paper_model`); ``pretrain_epochs``: autoencoder
    pre-training epochs of AE400-10; ``noise_sigmas``: the Gaussian-noise rows of Table 2.
    """

    # evaluation-only: a finished run re-evaluates with new values, without retraining
    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ('n_attack', 'c_rounds', 'lbfgs_maxiter', 'attack_chunk', 'noise_sigmas')

    models: tuple[str, ...] = im.SZEGEDY_TABLE1_MODELS
    pretrain_epochs: int = 5
    noise_sigmas: tuple[float, ...] = (0.1, 0.3)

    PRESETS: typing.ClassVar = {
        "quick": dict(dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=4000, n_test=1000, epochs=4,
                      pretrain_epochs=3, n_attack=32, c_rounds=5, lbfgs_maxiter=40, attack_chunk=32),
        "medium": dict(epochs=10, pretrain_epochs=10, n_attack=200, c_rounds=8, lbfgs_maxiter=100,
                       attack_chunk=100, ckpt_every=5),
        "paper": dict(epochs=50, pretrain_epochs=50, n_attack=1000, c_rounds=10, lbfgs_maxiter=200,
                      attack_chunk=100, ckpt_every=5),
    }
    COST: typing.ClassVar = {
        "quick": "~1 min CPU (Fashion-MNIST sample)",
        "medium": "~6 min CPU (estimate: 6 models × 10 epochs on 60k, 200 L-BFGS attacks each)",
        "paper": "~20 min on 2 CPU cores (measured 1,203 s: 6 models × 50 epochs on 60k, 1000 L-BFGS attacks each)",
    }

    def validate(self) -> None:
        super().validate()
        check_models(self.models)
        require(self.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0 (got {self.pretrain_epochs})")
        require(all(s > 0 for s in self.noise_sigmas), f"noise_sigmas must be positive ({self.noise_sigmas})")


def train_and_attack(cfg: ModelsConfig, run_dir: RunDir, ds: idata.ImageDataset, *, progress: bool) -> dict:
    """Train every model of ``cfg.models`` and make its L-BFGS examples (both cached in the run
    directory). Returns ``{name: {"recipe", "variables", "examples", "row"}}`` with ``row`` the
    model's Table 1 numbers."""
    out = {}
    x_att, y_att = ds.x_test[:cfg.n_attack], ds.y_test[:cfg.n_attack]
    for name in cfg.models:
        recipe, variables, info = train_cached(cfg, run_dir, name, ds.x_train, ds.y_train, progress=progress)
        t0 = time.time()
        ex = cached_examples(run_dir, name, lambda: lbfgs_examples(
            recipe, variables, x_att, y_att, key=attack_key(cfg.seed, name),
            c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=cfg.attack_chunk), cfg)
        train_ev = evaluate(recipe.module, variables, ds.x_train, ds.y_train)
        test_ev = evaluate(recipe.module, variables, ds.x_test, ds.y_test)
        out[name] = {"recipe": recipe, "variables": variables, "examples": ex,
                     "row": {"train_error": train_ev.error, "test_error": test_ev.error,
                             "params": im.count_params(variables), "weight_decay": list(recipe.weight_decay),
                             "train_seconds": info["train_seconds"], "reused_params": info["reused"],
                             "attack_seconds": round(time.time() - t0, 3), **example_stats(ex)}}
    return out
