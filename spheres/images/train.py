"""The one trainer of the image models: weight decay, dropout, adversarial objectives, pools.

One jitted program per epoch: a ``lax.scan`` over the epoch's minibatches (the permutation of epoch
``e`` is ``permutation(fold_in(shuffle_key, e))``; the dropout key of step ``t`` is
``fold_in(dropout_key, t)``), so an epoch is a pure function of ``(state, epoch)`` and training
resumes exactly from a checkpoint. The objective (`objective`) is

    data term  +  Σ_i λ_i Σ W_i² / k_i  (Szegedy's per-layer decay)  +  l1 · Σ |W|

(the L1 sum over every weight matrix, or over the first ``l1_layers`` of them in forward order:
Goodfellow §5's decay "on the first layer" of a maxout network is ``l1_layers=1``)

with the data term chosen by ``TrainSettings.adversarial``:

* ``"none"``: ``J(θ, x, y)``;
* ``"fgsm"``: Goodfellow et al. 2015 §6, ``J̃ = α J(θ, x, y) + (1 − α) J(θ, x + ε sign ∇ₓJ(θ, x, y), y)``
  with the perturbation recomputed against the current parameters at every step (held constant
  in the parameter gradient), clipped to [0, 1] when ``clip``;
* ``"sign_noise"`` / ``"uniform_noise"``: the same with ``ε·(±1)`` or ``U(−ε, ε)`` noise instead of
  the gradient sign (Goodfellow's controls);
* ``"logistic_closed_form"``: for `LogisticRegression` only, the exact adversarial loss
  ``α ζ(−y z) + (1 − α) ζ(ε‖w‖₁ − y z)`` from ``theory.adversarial_logistic_loss`` (§5).

Szegedy et al.'s adversarial-pool training (§4.3) is `train_model` with an ``augment`` callback
that regenerates a fixed-size pool of adversarial examples every ``refresh_every`` epochs; the pool
is appended to the training set for the following epochs.

Losses: ``"softmax"`` (cross-entropy), ``"sigmoid"`` (binary, one logit), ``"rbf"`` (Bernoulli
cross-entropy per class on the RBF's log-probabilities), ``"reconstruction"`` (Bernoulli
cross-entropy of the autoencoder's reconstruction; used for AE pre-training).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..checkpoint import Checkpoints
from ..sharding import batch_sharding, data_mesh, replicated
from ..sphere.train import NonFiniteError, TrainState
from . import models as im
from .params import check_params_match, load_params, params_file, safe_name, save_params  # noqa: F401
from .weights import decayed_kernels, weight_decay_penalty

AdversarialKind = Literal["none", "fgsm", "sign_noise", "uniform_noise", "logistic_closed_form"]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How to train one model (hashable: it is a static argument of the jitted epoch).

    ``trainable``: top-level parameter names to update (``None``: all), e.g. ``("classifier",)``
    to train the softmax on a frozen autoencoder code.
    """

    epochs: int = 10
    batch: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd", "momentum"] = "adam"
    loss: Literal["softmax", "sigmoid", "rbf", "reconstruction"] = "softmax"
    weight_decay: tuple[float, ...] = (0.0,)
    l1: float = 0.0
    l1_layers: int = 0
    adversarial: AdversarialKind = "none"
    eps: float = 0.25
    alpha: float = 0.5
    clip: bool = True
    trainable: tuple[str, ...] | None = None

    def validate(self) -> None:
        if self.epochs < 0 or self.batch < 1:
            raise ValueError(f"epochs must be >= 0 and batch >= 1 (got {self.epochs}, {self.batch})")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ValueError(f"lr must be positive (got {self.lr})")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (got {self.alpha})")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0 (got {self.eps})")
        if not (self.l1 >= 0 and np.isfinite(self.l1)):
            raise ValueError(f"l1 must be >= 0 (got {self.l1})")
        if isinstance(self.l1_layers, bool) or not isinstance(self.l1_layers, int) or self.l1_layers < 0:
            raise ValueError(f"l1_layers must be an int >= 0: 0 for every layer, k for the first k "
                             f"(got {self.l1_layers!r})")
        if self.adversarial == "logistic_closed_form" and self.loss != "sigmoid":
            raise ValueError("adversarial='logistic_closed_form' needs the binary 'sigmoid' loss")


def settings_for(recipe: im.ModelRecipe, **kw) -> TrainSettings:
    """`TrainSettings` with the recipe's loss, weight decay and L1 decay, plus overrides ``kw``."""
    base = dict(loss=recipe.loss, weight_decay=tuple(recipe.weight_decay), l1=recipe.l1)
    base.update(kw)
    return TrainSettings(**base)


# ----------------------------------------------------------------------------------- losses


def _log1mexp(a: jax.Array) -> jax.Array:
    """``log(1 − eᵃ)`` for ``a < 0``, accurate at both ends (Mächler 2012)."""
    a = jnp.minimum(a, -1e-7)
    return jnp.where(a > -0.6931472, jnp.log(-jnp.expm1(a)), jnp.log1p(-jnp.exp(a)))


def per_example_loss(kind: str, outputs: jax.Array, y: jax.Array, x: jax.Array | None = None) -> jax.Array:
    """Per-example loss ``(B,)`` of model outputs (see the module docstring for the kinds)."""
    if kind == "softmax":
        return optax.softmax_cross_entropy_with_integer_labels(outputs, y)
    if kind == "sigmoid":
        return optax.sigmoid_binary_cross_entropy(outputs, y.astype(outputs.dtype))
    if kind == "rbf":
        onehot = jax.nn.one_hot(y, outputs.shape[-1], dtype=outputs.dtype)
        return -jnp.sum(onehot * outputs + (1 - onehot) * _log1mexp(outputs), axis=-1)
    if kind == "reconstruction":
        target = im.flatten_images(x)
        return optax.sigmoid_binary_cross_entropy(outputs, target).sum(-1)
    raise ValueError(f"unknown loss {kind!r}")


def _forward(model, params, x, train: bool, key, kind: str):
    rngs = {"dropout": key} if train else None
    method = "reconstruct" if kind == "reconstruction" else None
    if method is not None:
        return model.apply({"params": params}, x, method=method)
    return model.apply({"params": params}, x, train=train, rngs=rngs)


def _perturb(model, settings: TrainSettings, params, x, y, key):
    """The second input of ``J̃``: FGSM against the current parameters, or the noise controls."""
    eps = settings.eps
    if settings.adversarial == "fgsm":
        def total(xx):
            return per_example_loss(settings.loss, _forward(model, params, xx, True, key, settings.loss),
                                    y, xx).sum()
        eta = eps * jnp.sign(jax.grad(total)(x))
    elif settings.adversarial == "sign_noise":
        eta = eps * jnp.where(jax.random.bernoulli(jax.random.fold_in(key, 7), 0.5, x.shape), 1.0, -1.0)
    else:  # uniform_noise
        eta = jax.random.uniform(jax.random.fold_in(key, 7), x.shape, x.dtype, -eps, eps)
    xa = x + eta
    if settings.clip:
        xa = jnp.clip(xa, 0.0, 1.0)
    return jax.lax.stop_gradient(xa)


def objective(model, settings: TrainSettings, params, x, y, key):
    """The training objective on one batch; returns ``(value, outputs_on_clean_x)``."""
    k_clean, k_adv = jax.random.split(key)
    outputs = _forward(model, params, x, True, k_clean, settings.loss)
    clean = per_example_loss(settings.loss, outputs, y, x).mean()
    kind = settings.adversarial
    if kind == "none":
        data = clean
    elif kind == "logistic_closed_form":
        from theory import adversarial_logistic_loss

        w = params["dense_0"]["kernel"][:, 0]
        b = params["dense_0"]["bias"][0]
        ypm = 2.0 * y.astype(w.dtype) - 1.0
        adv = adversarial_logistic_loss(w, b, im.flatten_images(x), ypm, settings.eps).mean()
        data = settings.alpha * clean + (1.0 - settings.alpha) * adv
    else:
        xa = _perturb(model, settings, params, x, y, k_adv)
        adv = per_example_loss(settings.loss, _forward(model, params, xa, True, k_adv, settings.loss),
                               y, xa).mean()
        data = settings.alpha * clean + (1.0 - settings.alpha) * adv
    reg = jnp.zeros((), data.dtype)
    if any(settings.weight_decay):
        reg = reg + weight_decay_penalty(params, settings.weight_decay)
    if settings.l1:
        kernels = decayed_kernels(params)
        kernels = kernels[:settings.l1_layers] if settings.l1_layers else kernels
        reg = reg + settings.l1 * sum(jnp.sum(jnp.abs(w)) for _, w in kernels)
    return data + reg, outputs


def make_optimizer(settings: TrainSettings, params) -> optax.GradientTransformation:
    """Adam / SGD / momentum SGD at ``settings.lr``; parameters outside ``trainable`` are frozen.

    The same object is returned for the same settings and parameter names, so a jitted epoch
    (whose state carries the optimiser as a static field) compiles once per model and settings.
    """
    return _make_optimizer(settings, tuple(sorted(params)))


@functools.lru_cache(maxsize=64)
def _make_optimizer(settings: TrainSettings, names: tuple[str, ...]) -> optax.GradientTransformation:
    params = dict.fromkeys(names)
    base = {"adam": lambda: optax.adam(settings.lr), "sgd": lambda: optax.sgd(settings.lr),
            "momentum": lambda: optax.sgd(settings.lr, momentum=0.9)}[settings.optimizer]()
    if settings.trainable is None:
        return base
    missing = set(settings.trainable) - set(params)
    if missing:
        raise ValueError(f"trainable names {sorted(missing)} are not parameters of the model "
                         f"(have {sorted(params)})")
    labels = lambda p: {k: jax.tree_util.tree_map(  # noqa: E731
        lambda _, k=k: "train" if k in settings.trainable else "freeze", v) for k, v in p.items()}
    return optax.multi_transform({"train": base, "freeze": optax.set_to_zero()}, labels)


def create_state(model, settings: TrainSettings, variables) -> TrainState:
    params = variables["params"]
    tx = make_optimizer(settings, params)
    return TrainState(step=jnp.asarray(0, jnp.int32), params=params, batch_stats={},
                      opt_state=tx.init(params), model=model, tx=tx)


def train_step(state: TrainState, settings: TrainSettings, x, y, key):
    """One optimiser step on ``x (B, 28, 28)``, ``y (B,)``. Returns ``(state, {"loss", "accuracy"})``."""
    (loss, outputs), grads = jax.value_and_grad(
        lambda p: objective(state.model, settings, p, x, y, key), has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if settings.loss == "reconstruction":
        acc = jnp.zeros((), jnp.float32)
    else:
        acc = jnp.mean(im.predict_classes(outputs) == y)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), \
        {"loss": loss, "accuracy": acc}


class EpochMetrics(NamedTuple):
    loss: jax.Array
    accuracy: jax.Array
    first_bad_step: jax.Array


@functools.lru_cache(maxsize=64)
def make_epoch_runner(settings: TrainSettings, *, mesh=None) -> Callable:
    """Compile one epoch into a jitted ``lax.scan``: ``run(state, x, y, key, epoch) -> (state, EpochMetrics)``.

    ``x (N, ...)``, ``y (N,)`` stay on the device; the epoch takes ``N // batch`` minibatches of the
    permutation ``permutation(fold_in(fold_in(key, 0), epoch), N)`` (the last ``N mod batch``
    examples of each shuffle are skipped). Dropout and adversarial noise use
    ``fold_in(fold_in(key, 1), step)``. Minibatches are sharded over the ``data`` mesh.
    """
    mesh = data_mesh() if mesh is None else mesh
    shard = batch_sharding(mesh)
    batch = settings.batch

    def run(state: TrainState, x, y, key, epoch):
        n = x.shape[0]
        steps = n // batch
        perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 0), epoch), n)
        k_step = jax.random.fold_in(key, 1)

        def body(st, i):
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
            xb = jax.lax.with_sharding_constraint(x[idx], shard)
            yb = jax.lax.with_sharding_constraint(y[idx], shard)
            st, m = train_step(st, settings, xb, yb, jax.random.fold_in(k_step, st.step))
            return st, m

        start = state.step
        state, ms = jax.lax.scan(body, state, jnp.arange(steps))
        bad = ~jnp.isfinite(ms["loss"])
        first_bad = jnp.where(bad.any(), start + jnp.argmax(bad), -1).astype(jnp.int32)
        return state, EpochMetrics(ms["loss"].mean(), ms["accuracy"].mean(), first_bad)

    jitted = jax.jit(run)
    rep = replicated(mesh)

    def call(state, x, y, key, epoch):
        return jitted(jax.device_put(state, rep), x, y, key, jnp.asarray(epoch, jnp.int32))

    call.jitted = jitted
    return call


# ----------------------------------------------------------------------------------- training


def train_model(model, settings: TrainSettings, x, y, *, key: jax.Array, variables=None,
                ckpt_dir: Path | str | None = None, ckpt_every: int = 1,
                augment: Callable[[int, dict], tuple[np.ndarray, np.ndarray]] | None = None,
                refresh_every: int = 1, on_epoch: Callable[[int, dict], None] | None = None,
                progress: bool = False, desc: str = "train") -> dict:
    """Train ``model`` on ``x (N, 28, 28)``, ``y (N,)`` for ``settings.epochs`` epochs; return variables.

    ``key`` drives shuffling, dropout and noise (initialisation too when ``variables`` is None:
    ``fold_in(key, 2)``). With ``ckpt_dir`` the state is checkpointed every ``ckpt_every`` epochs
    and training resumes from the newest checkpoint (exactly: epochs are pure functions of the
    state and the epoch number). ``augment(epoch, variables) -> (x_extra, y_extra)`` is called at
    every ``refresh_every``-th epoch and its (fixed-size) output is appended to the training data
    until the next refresh (Szegedy's adversarial pool); with ``augment`` checkpoints fall on
    refresh boundaries so a resumed run regenerates the same pool. ``on_epoch(epoch, metrics)``
    receives host-side ``{"epoch", "loss", "train_batch_accuracy", "seconds"}``. Raises
    `NonFiniteError` (spheres.sphere.train) naming the first bad step.
    """
    from tqdm.auto import tqdm

    settings.validate()
    if variables is None:
        variables = im.init_variables(model, jax.random.fold_in(key, 2))
    state = create_state(model, settings, variables)
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    n = x.shape[0]
    if n < settings.batch:
        raise ValueError(f"training set of {n} examples is smaller than the batch ({settings.batch})")
    if augment is not None and ckpt_dir is not None and ckpt_every % refresh_every:
        raise ValueError(f"ckpt_every ({ckpt_every}) must be a multiple of refresh_every ({refresh_every})")
    run_epoch = make_epoch_runner(settings)
    ckpt = Checkpoints(ckpt_dir) if ckpt_dir is not None else None
    start_epoch = 0
    try:
        if ckpt is not None:
            state = ckpt.restore_or(state)
            start_epoch = _epoch_of(ckpt, state)
        extra = None
        bar = tqdm(total=settings.epochs, initial=start_epoch, desc=desc, disable=not progress,
                   unit="epoch")
        for epoch in range(start_epoch, settings.epochs):
            t0 = time.time()
            if augment is not None and (epoch % refresh_every == 0 or extra is None):
                xe, ye = augment(epoch - epoch % refresh_every, {"params": state.params})
                extra = (jnp.asarray(xe, jnp.float32), jnp.asarray(ye, jnp.int32))
            xs, ys = (x, y) if extra is None else (jnp.concatenate([x, extra[0]]), jnp.concatenate([y, extra[1]]))
            state, m = run_epoch(state, xs, ys, key, epoch)
            m = jax.device_get(m)
            if int(m.first_bad_step) >= 0:
                raise NonFiniteError(int(m.first_bad_step), "loss")
            record = {"epoch": epoch + 1, "loss": float(m.loss),
                      "train_batch_accuracy": float(m.accuracy), "seconds": round(time.time() - t0, 3)}
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4g}")
            if ckpt is not None and ((epoch + 1) % ckpt_every == 0 or epoch + 1 == settings.epochs):
                ckpt.save(epoch + 1, state)
        bar.close()
    finally:
        if ckpt is not None:
            ckpt.close()
    return {"params": state.params}


def _epoch_of(ckpt: Checkpoints, state) -> int:
    step = ckpt.latest_step()
    return 0 if step is None else int(step)   # checkpoints are numbered by completed epochs


def train_recipe(recipe: im.ModelRecipe, settings: TrainSettings, x, y, *, key: jax.Array,
                 ckpt_dir: Path | str | None = None, pretrain_epochs: int | None = None,
                 progress: bool = False, on_epoch=None, **kw) -> dict:
    """Train a paper model by its recipe: for ``AE400-10``, autoencoder pre-training
    (``pretrain_epochs``, default ``settings.epochs``; reconstruction loss, encoder + decoder) then
    the softmax classifier on the frozen code; otherwise `train_model` directly."""
    if not recipe.pretrain_autoencoder:
        return train_model(recipe.module, settings, x, y, key=key, ckpt_dir=ckpt_dir,
                           progress=progress, on_epoch=on_epoch, desc=f"train {recipe.name}", **kw)
    sub = (lambda s: None) if ckpt_dir is None else (lambda s: Path(ckpt_dir) / s)
    # pre-training decays the encoder only (the classifier is frozen; the decoder is not on the
    # classification path and is not decayed)
    pre = dataclasses.replace(settings, loss="reconstruction", trainable=("encoder", "decoder"),
                              weight_decay=(settings.weight_decay[0], 0.0), adversarial="none",
                              epochs=settings.epochs if pretrain_epochs is None else pretrain_epochs)
    wrap = (lambda stage: (lambda e, r: on_epoch(e, {**r, "stage": stage}))) if on_epoch else (lambda s: None)
    variables = train_model(recipe.module, pre, x, y, key=jax.random.fold_in(key, 10),
                            ckpt_dir=sub("autoencoder"), progress=progress, on_epoch=wrap("autoencoder"),
                            desc=f"pretrain {recipe.name}")
    clf = dataclasses.replace(settings, trainable=("classifier",))
    return train_model(recipe.module, clf, x, y, key=jax.random.fold_in(key, 11), variables=variables,
                       ckpt_dir=sub("classifier"), progress=progress, on_epoch=wrap("classifier"),
                       desc=f"train {recipe.name}", **kw)


# ----------------------------------------------------------------------------------- parameters on disk


def train_or_load(run_dir, name: str, recipe: im.ModelRecipe, settings: TrainSettings, x, y, *,
                  key: jax.Array, progress: bool = False, ckpt_every: int = 1, **kw) -> tuple[dict, dict]:
    """Train ``recipe`` once per run directory: reuse ``params-NAME.npz`` when present, else train
    (checkpointing under ``ckpt/NAME`` every ``ckpt_every`` epochs, so an interrupted run resumes)
    and save. Returns ``(variables, info)`` with ``info = {"train_seconds", "reused"}``."""
    cached = load_params(run_dir, name)
    if cached is not None:
        check_params_match(cached, recipe.module, params_file(run_dir, name))
        return cached, {"train_seconds": 0.0, "reused": True}
    logged = {(r.get("model"), r.get("stage"), r.get("epoch")) for r in run_dir.read_metrics()}

    def on_epoch(epoch, record):
        rec = {"model": name, **record}
        if (name, rec.get("stage"), epoch) not in logged:
            run_dir.log_metrics(rec)

    t0 = time.time()
    variables = train_recipe(recipe, settings, x, y, key=key, ckpt_dir=run_dir.ckpt_dir / safe_name(name),
                             progress=progress, on_epoch=on_epoch, ckpt_every=ckpt_every, **kw)
    save_params(run_dir, name, variables)
    return variables, {"train_seconds": round(time.time() - t0, 3), "reused": False}
