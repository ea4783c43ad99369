"""``szegedy-adversarial-training``: training with a pool of L-BFGS examples (Szegedy et al. 2013, §4.2).

FC100-100-10 trained twice from the same initialisation and minibatch order: with weight decay
only, and with a pool of ``pool_size`` L-BFGS adversarial examples regenerated every
``refresh_every`` epochs from random training images against the current model and appended to
the training set (until the first refresh the pool holds clean copies: an untrained model has no
meaningful adversarial examples). With ``dropout > 0`` a third model, the paper's reference
baseline, is trained the same way (same initialisation, order and weight decay) with dropout at
that rate after each hidden layer. Every model is then attacked with L-BFGS and FGSM (ε = 0.1).

    spheres run szegedy-adversarial-training --preset quick    # the shipped sample: ~40 s CPU
    spheres run szegedy-adversarial-training --preset paper    # all of Fashion-MNIST, 50 epochs, pools of 10,000

Expected (quick, seed 0): the pool's refresh at epoch 2 attacks every image successfully; test error
18.9% with weight decay only and 20.0% with the pool, L-BFGS distortion 0.117 and 0.129, FGSM
(ε = 0.1) error 62.5% for both: at this size the pool does not help.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import jax
import jax.numpy as jnp
import numpy as np

import attacks

from ..config import require
from ..images import data as idata
from ..images import models as im
from ..images import train as itrain
from ..images.adversarial import example_stats, lbfgs_examples
from ..images.evaluate import evaluate
from ..keys import named_keys
from ..paper import PaperRow
from ..results import RunDir
from ..tables import (Tables, ci_note, difference_over_seeds, in_order, num, over_seeds, pct_ci,
                      rate_difference)
from . import register
from ._image import base_summary, cached_examples, finish_summary, load_data, model_key, tables
from ._szegedy import LbfgsFields, paper_value

MODEL = "FC100-100-10"
PAPER = {
    "weight decay only": paper_value("test error, weight decay only", "1.6%", "§4.2", "secondary"),
    "adversarial pool": paper_value("test error with a refreshed adversarial pool", "< 1.2%", "§4.2", "secondary"),
    "dropout (for reference)": paper_value("test error with dropout", "≈ 1.3%", "§4.2", "secondary"),
    "pool effect": paper_value("test error, adversarial pool minus weight decay only", "lower: 1.6% → < 1.2%",
                               "§4.2", "secondary"),
    "pool vs dropout": paper_value("test error, adversarial pool minus dropout", "lower: ≈ 1.3% → < 1.2%",
                                   "§4.2", "secondary"),
}
ORDER = ["weight decay only", "adversarial pool", "dropout (for reference)"]


@dataclasses.dataclass(frozen=True)
class AdversarialTrainingConfig(LbfgsFields):
    """Szegedy §4.2: ``pool_size`` L-BFGS examples regenerated every ``refresh_every`` epochs
    (``ckpt_every`` a multiple of it, so a resumed run regenerates the same pool); the trained
    models are attacked on the first ``n_attack`` test images. ``dropout`` in ``[0, 1)``: the rate of
    the third model, FC100-100-10 with dropout after each hidden layer (0: not trained). Changing it
    on a finished run trains and attacks that model only (the other two are reused)."""

    n_attack: int = 200
    pool_size: int = 10_000
    refresh_every: int = 1
    dropout: float = 0.0

    EVAL_ONLY: typing.ClassVar[tuple[str, ...]] = ("dropout",)

    PRESETS: typing.ClassVar = {
        "quick": dict(dataset=idata.SAMPLE, batch=50, lr=3e-3, n_train=3000, n_test=1000, epochs=4, pool_size=64,
                      refresh_every=2, n_attack=16, c_rounds=4, lbfgs_maxiter=30, attack_chunk=16, ckpt_every=2,
                      dropout=0.5),
        "medium": dict(epochs=10, pool_size=2000, refresh_every=2, n_attack=200, c_rounds=6, lbfgs_maxiter=50,
                       attack_chunk=100, ckpt_every=2, dropout=0.5),
        "paper": dict(epochs=50, pool_size=10_000, refresh_every=5, n_attack=1000, c_rounds=8, lbfgs_maxiter=100,
                      attack_chunk=100, ckpt_every=5, dropout=0.5),
    }
    COST: typing.ClassVar = {
        "quick": "~40 s CPU",
        "medium": "~10 min CPU (estimate: 2 × 10 epochs on 60k, 4 refreshes of 2,000 L-BFGS examples)",
        "paper": "~45 min on one CPU core (measured 2,541 s: 9 refreshes of 10,000 L-BFGS examples)",
    }

    def validate(self) -> None:
        super().validate()
        require(self.pool_size >= 1 and self.refresh_every >= 1, "pool_size and refresh_every must be >= 1")
        require(isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                and 0.0 <= self.dropout < 1.0, f"dropout must be a rate in [0, 1) (got {self.dropout!r})")
        require(self.ckpt_every % self.refresh_every == 0,
                f"ckpt_every ({self.ckpt_every}) must be a multiple of refresh_every ({self.refresh_every}) "
                f"so a resumed run regenerates the same pool")


def _pool(cfg: AdversarialTrainingConfig, run_dir: RunDir, ds: idata.ImageDataset, recipe, key):
    """The ``augment(epoch, variables)`` callback of `spheres.images.train.train_model` that
    regenerates the pool (and logs each refresh)."""
    chunk = min(cfg.attack_chunk, cfg.pool_size)
    label = f"{MODEL} + adversarial pool"

    def augment(epoch, variables):
        kk = jax.random.fold_in(key, epoch)
        idx = np.asarray(jax.random.choice(kk, ds.x_train.shape[0], (cfg.pool_size,), replace=False))
        if epoch == 0:
            # the model is untrained: its "adversarial examples" would be noise. The pool starts as
            # clean copies (a fixed size keeps one compilation) and is attacked from the first refresh on.
            run_dir.log_metrics({"model": label, "pool_refresh_epoch": 0, "pool_attack_success_rate": None,
                                 "pool_mean_distortion": None, "pool": "clean copies (untrained model)"})
            return ds.x_train[idx], ds.y_train[idx]
        ex = lbfgs_examples(recipe, variables, ds.x_train[idx], ds.y_train[idx], key=jax.random.fold_in(kk, 1),
                            c_rounds=cfg.c_rounds, maxiter=cfg.lbfgs_maxiter, chunk=chunk)
        # failed attacks fall back to the clean image: the pool has a fixed size (one compilation)
        x_pool = np.where(ex["success"][:, None, None], ex["x_adv"], ex["x"])
        run_dir.log_metrics({"model": label, "pool_refresh_epoch": epoch,
                             "pool_attack_success_rate": float(ex["success"].mean()),
                             "pool_mean_distortion": float(ex["distortion"][ex["success"]].mean())
                             if ex["success"].any() else None})
        return x_pool, ex["y"]

    return augment


def _variants(cfg: AdversarialTrainingConfig):
    """``(label, recipe, pooled, params name)`` of each model trained: weight decay only, the pool,
    and with ``cfg.dropout`` the dropout baseline (its rate in the params name, so a changed rate
    never reuses another rate's parameters)."""
    plain = im.paper_model(MODEL)
    out = [("weight decay only", plain, False, MODEL), ("adversarial pool", plain, True, f"{MODEL}+pool")]
    if cfg.dropout:
        module = dataclasses.replace(plain.module, dropout=float(cfg.dropout))
        out.append(("dropout (for reference)", dataclasses.replace(plain, module=module), False,
                    f"{MODEL}+dropout{cfg.dropout:g}"))
    return out


@register("szegedy-adversarial-training", AdversarialTrainingConfig,
          "Szegedy §4.2: FC100-100-10 trained with a refreshed pool of L-BFGS examples vs weight decay alone",
          table=lambda s: table(s), paper_rows=lambda s: paper_rows(s), paper="szegedy",
          seed_rows=lambda ss: seed_rows(ss))
def run(cfg: AdversarialTrainingConfig, run_dir: RunDir, *, progress: bool = True) -> dict:
    t0 = time.time()
    ds = load_data(cfg)
    k = named_keys(cfg.seed, ("pool", "attack"))
    rows = {}
    x_att, y_att = ds.x_test[:cfg.n_attack], ds.y_test[:cfg.n_attack]
    for label, recipe, pooled, run_name in _variants(cfg):
        kw = ({"augment": _pool(cfg, run_dir, ds, recipe, k["pool"]), "refresh_every": cfg.refresh_every}
              if pooled else {})
        settings = itrain.settings_for(recipe, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr)
        cached = itrain.load_params(run_dir, run_name)
        if cached is not None:
            itrain.check_params_match(cached, recipe.module, itrain.params_file(run_dir, run_name))
        t1 = time.time()
        if cached is None:
            variables = itrain.train_recipe(recipe, settings, ds.x_train, ds.y_train,
                                            key=model_key(cfg.seed, MODEL),   # same init and order for both
                                            ckpt_dir=run_dir.ckpt_dir / itrain.safe_name(run_name),
                                            ckpt_every=cfg.ckpt_every, progress=progress,
                                            on_epoch=lambda e, r, n=run_name: run_dir.log_metrics({"model": n, **r}),
                                            **kw)
            itrain.save_params(run_dir, run_name, variables)
        else:
            variables = cached
        # a model reused from a finished run keeps the training time that run measured
        train_s = (time.time() - t1 if cached is None else
                   ((run_dir.summary or {}).get("variants", {}).get(label, {}).get("train_seconds")))
        ex = cached_examples(run_dir, run_name, lambda: lbfgs_examples(
            recipe, variables, x_att, y_att, key=k["attack"], c_rounds=cfg.c_rounds,
            maxiter=cfg.lbfgs_maxiter, chunk=min(cfg.attack_chunk, cfg.n_attack)), cfg)
        fg = attacks.fgsm(im.apply_fn(recipe.module), jnp.asarray(x_att.reshape(len(x_att), -1)), jnp.asarray(y_att),
                          eps=0.1, bounds=(0.0, 1.0), params=variables)
        rows[label] = {"test_error": evaluate(recipe.module, variables, ds.x_test, ds.y_test).error,
                       "train_error": evaluate(recipe.module, variables, ds.x_train, ds.y_train).error,
                       "fgsm_eps0.1_error": float(np.mean(np.asarray(fg.success))),
                       "train_seconds": None if train_s is None else round(train_s, 3), **example_stats(ex)}
    summary = base_summary(cfg, run_dir, ds, t0)
    summary.update({"model": MODEL, "variants": rows, "pool_size": cfg.pool_size, "refresh_every": cfg.refresh_every,
                    "dropout": cfg.dropout})
    return finish_summary(run_dir, summary, t0)


def _n_attacked(s: dict) -> str:
    return " / ".join(sorted({str(r["n_attacked"]) for r in s["variants"].values()}))


def table(s: dict) -> Tables:
    rows = []
    for label, r in in_order(s["variants"], ORDER):
        paper = PAPER.get(label)
        rows.append([label, paper.value if paper else "-", pct_ci(r["test_error"], s["dataset_detail"]["test_size"]),
                     num(r["mean_distortion"]), pct_ci(r["fgsm_eps0.1_error"], r["n_attacked"])])
    return tables(s, f"{s['model']} with and without an adversarial pool (Szegedy §4.2)",
                  ["training", "test err paper", "ours", "L-BFGS distortion (ours)", "FGSM ε=0.1 err (ours)"], rows,
                  ["paper: Szegedy et al. 2013, §4.2 (MNIST; secondary)"
                   + (f"; dropout rate {s['dropout']:g} after each hidden layer" if s.get("dropout") else
                      "; dropout: " + PAPER["dropout (for reference)"].value + " (not trained here)"),
                   f"pool: {s['pool_size']} L-BFGS examples refreshed every {s['refresh_every']} epoch(s)",
                   f"test error over the {s['dataset_detail']['test_size']} test images; L-BFGS and FGSM "
                   f"on the first {_n_attacked(s)} of them", ci_note()])


def paper_rows(s: dict) -> list[PaperRow]:
    drop = "dropout (for reference)"
    drop_note = f"{s['dataset']}; dropout rate {s.get('dropout', 0):g} after each hidden layer"
    rows = [PaperRow(PAPER[label], pct_ci(r["test_error"], s["dataset_detail"]["test_size"]),
                     note=drop_note if label == drop else s["dataset"])
            for label, r in in_order(s["variants"], ORDER) if label in PAPER]
    v, n = s["variants"], s["dataset_detail"]["test_size"]
    for key, (a, b) in (("pool effect", ("adversarial pool", "weight decay only")),
                        ("pool vs dropout", ("adversarial pool", drop))):
        if a in v and b in v:
            rows.append(PaperRow(PAPER[key], rate_difference(v[a]["test_error"], n, v[b]["test_error"], n),
                                 note=drop_note if b == drop else s["dataset"]))
    if drop not in v:
        rows.append(PaperRow(PAPER[drop], "not measured: this run trained no dropout variant of FC100-100-10 "
                                          "(set dropout, e.g. 0.5, to train it)"))
    return rows


def seed_rows(summaries: list[dict]) -> list[PaperRow]:
    """The paper's test errors beside our mean over several seeds (same config otherwise) with the
    t interval across seeds (`spheres.tables.over_seeds`), and the pool's effect as per-seed
    paired differences (`spheres.tables.difference_over_seeds`)."""
    s0, drop = summaries[0], "dropout (for reference)"
    seeds = [s["seed"] for s in summaries]
    note = lambda label: (f"{s0['dataset']}; dropout rate {s0.get('dropout', 0):g} after each hidden layer"  # noqa: E731
                          if label == drop else s0["dataset"])
    err = lambda label: [s["variants"][label]["test_error"] for s in summaries]  # noqa: E731
    rows = [PaperRow(PAPER[label], over_seeds(err(label), seeds), note=note(label))
            for label, _ in in_order(s0["variants"], ORDER) if label in PAPER]
    for key, (a, b) in (("pool effect", ("adversarial pool", "weight decay only")),
                        ("pool vs dropout", ("adversarial pool", drop))):
        if a in s0["variants"] and b in s0["variants"]:
            rows.append(PaperRow(PAPER[key], difference_over_seeds([x - y for x, y in zip(err(a), err(b))], seeds),
                                 note=note(b)))
    return rows
