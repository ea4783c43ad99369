"""Flax Linen models of Szegedy et al. 2013 (§4.1, Table 1) and Goodfellow et al. 2015 (§4-8).

Every model maps a batch of images ``x (B, 28, 28)`` (or ``(B, 784)``, or ``(B, 28, 28, 1)``) to
class scores ``(B, 10)`` — or one logit ``(B,)`` for the binary `LogisticRegression` — and takes
``train`` (dropout on/off; ``rngs={"dropout": key}`` when on). `logit_fns` is the one builder of a
model's eval-mode functions, built once per model so that attacks and evaluation compile once per
architecture: ``per_example(variables, x (28, 28) or (784,)) -> logits (10,)`` (what attacks and
theory take, docs/design.md, "Contracts"), ``batched(variables, x (B, ...)) -> (B, 10)`` (jitted) and
``features(variables, x (B, ...)) -> (B, h)`` (the last hidden layer). ``apply_fn``,
``batch_apply_fn``, ``features_fn`` and ``logit_fn(model, variables)`` are those three by name.

Models (``paper_model(name)`` builds each by its paper name, with its training recipe):

=====================  ===================================================================  ==========
name                   model                                                                source
=====================  ===================================================================  ==========
``FC10(λ)``            softmax regression, weight decay λ (λ ∈ {1e-4, 1e-2, 1})             Szegedy T1
``FC100-100-10``       sigmoid MLP 100-100, decay λ = (1e-5, 1e-5, 1e-6)                    Szegedy T1
``FC200-200-10``       sigmoid MLP 200-200, same decay                                      Szegedy T1
``FC123-456-10``       sigmoid MLP 123-456 (trained on P₁)                                   Szegedy T3
``AE400-10``           sigmoid autoencoder, 400 code units, softmax on the code, λ = 1e-6   Szegedy T1
``softmax``            shallow softmax regression                                           Goodfellow §4
``logreg``             logistic regression (one logit, two classes)                         Goodfellow §5
``maxout-240``         2 maxout layers × 240 units × 5 pieces, dropout 0.2 / 0.5            Goodfellow §6
``maxout-1600``        2 maxout layers × 1600 units × 5 pieces                              Goodfellow §6
``rbf``                shallow RBF: p(y=k|x) = exp(−Σ β_k (x − μ_k)²)                        Goodfellow §7
``conv``               small conv net (for unit analysis and the convolutional bound)       Szegedy §3,4.3
=====================  ===================================================================  ==========

A recipe's weight decay is Szegedy's per-layer ``λ_i · Σ W_i² / k_i`` (`spheres.images.weights`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable, Literal, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..sharding import conv_impl
from .layers import Conv2D, im2col, max_pool_2x2  # noqa: F401  (im2col: part of this module's API)

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28)


def flatten_images(x: jax.Array) -> jax.Array:
    """``(B, 28, 28)``, ``(B, 28, 28, 1)`` or ``(B, 784)`` -> ``(B, 784)``."""
    return x.reshape(x.shape[0], -1)


def as_nhwc(x: jax.Array) -> jax.Array:
    """``(B, 28, 28)``, ``(B, 784)`` or ``(B, 28, 28, 1)`` -> ``(B, 28, 28, 1)``."""
    return x.reshape(x.shape[0], *INPUT_SHAPE, 1)


_ACTIVATIONS = {"sigmoid": nn.sigmoid, "relu": nn.relu, "tanh": jnp.tanh}


class SoftmaxRegression(nn.Module):
    """FC10: one dense layer ``x (B, 784) -> logits (B, 10)`` (softmax regression)."""

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(self.num_classes, name="dense_0")(flatten_images(x))


class MLP(nn.Module):
    """Fully connected net ``FC{features}-10`` (Szegedy: sigmoid units).

    Layers ``dense_0 … dense_{n-1}`` (hidden, activation) and ``dense_{n}`` (logits). The last hidden
    layer is sown as ``intermediates/features`` (for unit analysis).
    """

    features: Sequence[int] = (100, 100)
    activation: Literal["sigmoid", "relu", "tanh"] = "sigmoid"
    num_classes: int = NUM_CLASSES
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = flatten_images(x)
        act = _ACTIVATIONS[self.activation]
        for i, width in enumerate(self.features):
            h = act(nn.Dense(width, name=f"dense_{i}")(h))
            if self.dropout:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        self.sow("intermediates", "features", h)
        return nn.Dense(self.num_classes, name=f"dense_{len(self.features)}")(h)


class AutoencoderClassifier(nn.Module):
    """AE400-10: a sigmoid autoencoder (``encoder`` 784 → code, ``decoder`` code → 784) with a
    softmax ``classifier`` on the code (Szegedy Table 1). Train the autoencoder on reconstruction
    first (``reconstruct``), then the classifier on the frozen code (`spheres.images.train` does both).

    ``__call__`` gives class logits ``(B, 10)``; ``reconstruct`` gives reconstruction logits
    ``(B, 784)`` (Bernoulli cross-entropy against the pixels); ``init_all`` creates every parameter.
    """

    code: int = 400
    num_classes: int = NUM_CLASSES

    def setup(self):
        self.encoder = nn.Dense(self.code)
        self.decoder = nn.Dense(INPUT_SHAPE[0] * INPUT_SHAPE[1])
        self.classifier = nn.Dense(self.num_classes)

    def encode(self, x):
        return nn.sigmoid(self.encoder(flatten_images(x)))

    def reconstruct(self, x):
        return self.decoder(self.encode(x))

    def __call__(self, x, train: bool = False):
        h = self.encode(x)
        self.sow("intermediates", "features", h)
        return self.classifier(h)

    def init_all(self, x, train: bool = False):
        return self(x), self.reconstruct(x)


class LogisticRegression(nn.Module):
    """Binary logistic regression: one logit ``wᵀx + b`` per example ``(B,)`` (positive = class 1)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1, name="dense_0")(flatten_images(x))[..., 0]


class Maxout(nn.Module):
    """Maxout network (Goodfellow et al. 2013, as used in Goodfellow et al. 2015 §6).

    ``layers`` maxout layers of ``units`` units, each the max of ``pieces`` linear pieces
    (``maxout_i``: Dense(units·pieces), then a max over pieces), dropout ``input_dropout`` on the
    input and ``hidden_dropout`` after each maxout layer when ``train``, then a softmax layer
    ``dense_out``. The paper's MNIST setting: 240 units × 5 pieces (1600 in the adversarial-training
    section). The max-norm constraint of the original is not used.
    """

    units: int = 240
    pieces: int = 5
    layers: int = 2
    input_dropout: float = 0.2
    hidden_dropout: float = 0.5
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = flatten_images(x)
        h = nn.Dropout(self.input_dropout, deterministic=not train)(h)
        for i in range(self.layers):
            z = nn.Dense(self.units * self.pieces, name=f"maxout_{i}")(h)
            h = z.reshape(*z.shape[:-1], self.units, self.pieces).max(axis=-1)
            h = nn.Dropout(self.hidden_dropout, deterministic=not train)(h)
        self.sow("intermediates", "features", h)
        return nn.Dense(self.num_classes, name="dense_out")(h)


class RBFNetwork(nn.Module):
    """Shallow RBF network (Goodfellow §7): ``p(y = k | x) = exp(−Σ_i β_ki (x_i − μ_ki)²)``.

    One radial unit per class with a centre ``mu (10, 784)`` and a positive diagonal precision
    ``beta = exp(log_beta) (10, 784)``. The returned scores are ``log p(y = k | x) ≤ 0``; the classes
    are independent (one-vs-rest), so the model's confidence is ``exp(score)``, not a softmax, and
    it can be low everywhere (which is why its mistakes have low confidence). Train with
    `spheres.images.train`'s ``"rbf"`` loss (Bernoulli cross-entropy per class).
    """

    num_classes: int = NUM_CLASSES
    beta_init: float = 0.01
    mu_init: float = 0.3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = flatten_images(x)
        m = x.shape[-1]
        mu = self.param("mu", nn.initializers.constant(self.mu_init), (self.num_classes, m))
        log_beta = self.param("log_beta", nn.initializers.constant(jnp.log(self.beta_init)),
                              (self.num_classes, m))
        beta = jnp.exp(log_beta)
        diff = x[:, None, :] - mu[None]
        return -jnp.sum(beta[None] * diff * diff, axis=-1)


class ConvNet(nn.Module):
    """A small conv net: ``conv_0`` 5×5×``channels[0]`` (stride 1, SAME) → ReLU → 2×2 max-pool →
    ``conv_1`` 5×5×``channels[1]`` (stride 2, SAME) → ReLU → ``dense_0`` (``hidden``, ReLU; sown as
    ``intermediates/features`` for unit analysis) → ``dense_1`` (logits).

    The convolutions are `Conv2D` (im2col; same parameters and outputs as ``nn.Conv``) and the
    pool is `max_pool_2x2`, for speed inside a training ``scan`` on CPU; ``conv_impl="xla"`` uses
    ``nn.Conv`` / ``nn.max_pool`` instead (the same function and parameters; faster where the
    backend has tuned convolutions, e.g. cuDNN). ``"auto"`` (default) is im2col on CPU and xla
    elsewhere (`spheres.sharding.conv_impl`). ``benchmarks/conv_training.py`` times both.
    ``conv_specs()`` gives each convolution's input size, stride and padding for
    ``theory.conv_lipschitz`` / ``theory.model_lipschitz_bound``.
    """

    channels: Sequence[int] = (16, 32)
    hidden: int = 100
    num_classes: int = NUM_CLASSES
    conv_impl: Literal["auto", "im2col", "xla"] = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if conv_impl(self.conv_impl) == "xla":   # nn.Conv / nn.max_pool: cuDNN on GPU; same parameters
            conv = lambda c, s, name: nn.Conv(c, (5, 5), strides=s, padding="SAME", name=name)  # noqa: E731
            pool = lambda h: nn.max_pool(h, (2, 2), strides=(2, 2))  # noqa: E731
        else:
            conv = lambda c, s, name: Conv2D(c, (5, 5), stride=s, name=name)  # noqa: E731
            pool = max_pool_2x2
        h = as_nhwc(x)
        h = nn.relu(conv(self.channels[0], 1, "conv_0")(h))
        h = pool(h)
        h = nn.relu(conv(self.channels[1], 2, "conv_1")(h))
        h = nn.relu(nn.Dense(self.hidden, name="dense_0")(h.reshape(h.shape[0], -1)))
        self.sow("intermediates", "features", h)
        return nn.Dense(self.num_classes, name="dense_1")(h)

    def conv_specs(self) -> dict:
        """``{"conv_0": (input (H, W), stride, padding), ...}`` for ``theory.model_lipschitz_bound``."""
        return {"conv_0": ((28, 28), 1, "SAME"), "conv_1": ((14, 14), 2, "SAME")}


# --------------------------------------------------------------------------- per-example functions


class LogitFns(NamedTuple):
    """A model's eval-mode functions, built once per model (`logit_fns`).

    ``per_example(variables, x) -> logits`` for ONE example ``x`` (``(28, 28)`` or ``(784,)``): what
    attacks and theory take (``attacks.*(per_example, x, y, params=variables)``).
    ``batched(variables, x (B, ...)) -> logits (B, ...)``: jitted, for evaluation.
    ``features(variables, x (B, ...)) -> (B, h)``: the sown last hidden layer (``intermediates/features``).
    """

    per_example: Callable
    batched: Callable
    features: Callable


@functools.cache
def logit_fns(model: nn.Module) -> LogitFns:
    """The one builder of an image model's eval-mode functions. Flax modules hash by their fields,
    so the same architecture gets the same function objects and every jitted attack or evaluation
    of it compiles once per shape, whatever the parameter values."""

    def per_example(variables, x):
        return model.apply(variables, x[None], train=False)[0]

    def batched(variables, x):
        return model.apply(variables, x, train=False)

    def features(variables, x):
        _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
        return state["intermediates"]["features"][0]

    return LogitFns(per_example, jax.jit(batched), features)


def apply_fn(model: nn.Module) -> Callable:
    """``f(variables, x) -> logits`` for ONE example, eval mode: ``logit_fns(model).per_example``."""
    return logit_fns(model).per_example


def logit_fn(model: nn.Module, variables) -> Callable[[jax.Array], jax.Array]:
    """Per-example eval-mode logit function ``x (28, 28) or (784,) -> logits (10,)`` (or a scalar
    for `LogisticRegression`), closing over ``variables``."""
    return functools.partial(logit_fns(model).per_example, variables)


def batch_apply_fn(model: nn.Module) -> Callable:
    """Jitted ``f(variables, x (B, ...)) -> logits (B, ...)``, eval mode: ``logit_fns(model).batched``."""
    return logit_fns(model).batched


def features_fn(model: nn.Module) -> Callable:
    """``f(variables, x (B, ...)) -> features (B, h)``: the sown last hidden layer, eval mode
    (``logit_fns(model).features``)."""
    return logit_fns(model).features


def class_probabilities(model: nn.Module, logits: jax.Array) -> jax.Array:
    """Probabilities the model assigns: softmax of the logits, ``exp`` of the RBF scores (independent
    per class), ``σ(z)`` of class 1 and ``1 − σ(z)`` of class 0 for logistic regression (``(B, 2)``)."""
    if isinstance(model, RBFNetwork):
        return jnp.exp(logits)
    if isinstance(model, LogisticRegression):
        p1 = jax.nn.sigmoid(logits)
        return jnp.stack([1.0 - p1, p1], axis=-1)
    return jax.nn.softmax(logits, axis=-1)


def predict_classes(logits: jax.Array) -> jax.Array:
    """``argmax`` for score vectors, ``z > 0`` for a binary logit."""
    if logits.ndim == 1:
        return (logits > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def init_variables(model: nn.Module, key: jax.Array) -> dict:
    """Initial ``{"params": ...}`` for an image model (all sub-modules, e.g. the AE decoder too).

    Jitted and cached per model: one compilation instead of one dispatch per initialiser op.
    """
    return dict(_jitted_init(model)(key))


@functools.cache
def _jitted_init(model: nn.Module):
    method = getattr(model, "init_all", None)

    def init(key):
        x = jnp.zeros((1, *INPUT_SHAPE), jnp.float32)
        return model.init({"params": key}, x, train=False, method=method)

    return jax.jit(init)


# --------------------------------------------------------------------------- the paper's models


@dataclasses.dataclass(frozen=True)
class ModelRecipe:
    """A paper model and how it is trained: the module, the loss, per-layer weight decay, L1 decay,
    and (for the autoencoder) the pre-training stage."""

    name: str
    module: nn.Module
    loss: Literal["softmax", "sigmoid", "rbf"] = "softmax"
    weight_decay: tuple[float, ...] = (0.0,)
    l1: float = 0.0
    pretrain_autoencoder: bool = False
    source: str = ""


_SIGMOID_DECAY = (1e-5, 1e-5, 1e-6)

# The six models of Szegedy et al. 2013, Table 1, in the table's order.
SZEGEDY_TABLE1_MODELS = ("FC10(1e-4)", "FC10(1e-2)", "FC10(1)", "FC100-100-10", "FC200-200-10", "AE400-10")


def paper_model(name: str, *, maxout_units: int | None = None, maxout_pieces: int = 5,
                conv_channels: Sequence[int] = (16, 32), conv_hidden: int = 100,
                ae_code: int | None = None) -> ModelRecipe:
    """The model called ``name`` in the papers (see the module table), with its training recipe.

    ``FC10(λ)`` takes any λ written as in the paper (``FC10(1e-4)``, ``FC10(1)``). ``maxout_units``
    overrides the width of ``maxout-240`` / ``maxout-1600`` (small widths for quick runs).
    """
    m = re.fullmatch(r"FC10\(([^)]+)\)", name)
    if m:
        lam = float(m.group(1))
        return ModelRecipe(name, SoftmaxRegression(), weight_decay=(lam,), source="Szegedy Table 1")
    m = re.fullmatch(r"FC(\d+)-(\d+)-10('?)", name)
    if m:
        return ModelRecipe(name, MLP((int(m.group(1)), int(m.group(2))), "sigmoid"),
                           weight_decay=_SIGMOID_DECAY, source="Szegedy Tables 1, 3")
    m = re.fullmatch(r"AE(\d+)-10", name)
    if m:
        code = int(m.group(1)) if ae_code is None else ae_code
        return ModelRecipe(name, AutoencoderClassifier(code), weight_decay=(1e-6, 1e-6),
                           pretrain_autoencoder=True, source="Szegedy Table 1")
    if name == "softmax":
        return ModelRecipe(name, SoftmaxRegression(), weight_decay=(0.0,), source="Goodfellow §4")
    if name == "logreg":
        return ModelRecipe(name, LogisticRegression(), loss="sigmoid", source="Goodfellow §5")
    m = re.fullmatch(r"maxout-(\d+)", name)
    if m:
        units = int(m.group(1)) if maxout_units is None else maxout_units
        return ModelRecipe(name, Maxout(units=units, pieces=maxout_pieces), source="Goodfellow §6")
    if name == "rbf":
        return ModelRecipe(name, RBFNetwork(), loss="rbf", source="Goodfellow §7")
    if name == "conv":
        return ModelRecipe(name, ConvNet(tuple(conv_channels), conv_hidden), source="Szegedy §3, §4.3")
    raise ValueError(f"unknown model {name!r}; known: FC10(λ), FC100-100-10, FC200-200-10, "
                     f"FC123-456-10, AE400-10, softmax, logreg, maxout-240, maxout-1600, rbf, conv")


def count_params(variables) -> int:
    """Number of parameters in ``variables["params"]`` (or in ``variables`` itself)."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(variables.get("params", variables))))
