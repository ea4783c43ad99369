"""Flax Linen models of Szegedy et al. 2013 (§4.1, Table 1) and Goodfellow et al. 2015 (§4-8).

Every model maps a batch of images ``x (B, 28, 28)`` (or ``(B, 784)``, or ``(B, 28, 28, 1)``) to
class scores ``(B, 10)`` — or one logit ``(B,)`` for the binary `LogisticRegression` — and takes
``train`` (dropout on/off; ``rngs={"dropout": key}`` when on). ``logit_fn(model, variables)`` is the
per-example eval-mode function ``x (28, 28) or (784,) -> logits (10,)`` that attacks and theory use
(DESIGN.md, "Contracts"); ``apply_fn(model)`` is the same with the variables as first argument
(``f(variables, x)``), cached per model so attacks compile once per architecture.

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

Weight decay is Szegedy's per-layer ``λ_i · Σ W_i² / k_i`` with ``k_i`` the number of units of layer
``i`` (`weight_decay_penalty`); layer order is the order of the dense/conv kernels in the forward pass.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import re
from typing import Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from theory.lipschitz import same_padding

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
    first (``reconstruct``), then the classifier on the frozen code (``image_train`` does both).

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
    `image_train`'s ``"rbf"`` loss (Bernoulli cross-entropy per class).
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


def im2col(h: jax.Array, kernel: tuple[int, int], stride: int) -> jax.Array:
    """Patches of ``h (B, H, W, C)`` for a ``"SAME"`` convolution: ``(B, H', W', kh·kw·C)`` with the
    feature axis ordered ``(kh, kw, C)``, so ``im2col(h) @ k.reshape(-1, C_out)`` is the convolution
    with an HWIO kernel ``k``. Built from ``kh·kw`` strided slices of the zero-padded input (the
    slices are static: the Python loop runs once, at trace time). Padding: `theory.same_padding`."""
    if getattr(h, "ndim", None) != 4:
        raise ValueError(f"im2col needs images of shape (B, H, W, C), got shape {getattr(h, 'shape', type(h))}")
    if (isinstance(kernel, int) or len(kernel) != 2
            or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1 for k in kernel)):
        raise ValueError(f"im2col: kernel must be a pair of positive ints (kh, kw), got {kernel!r}")
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
        raise ValueError(f"im2col: stride must be a positive int, got {stride!r}")
    kh, kw = kernel
    (t, b), (l, r) = same_padding(h.shape[1], kh, stride), same_padding(h.shape[2], kw, stride)
    hp = jnp.pad(h, ((0, 0), (t, b), (l, r), (0, 0)))
    ho, wo = -(-h.shape[1] // stride), -(-h.shape[2] // stride)
    return jnp.concatenate([hp[:, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride, :]
                            for i in range(kh) for j in range(kw)], axis=-1)


class Conv2D(nn.Module):
    """``"SAME"`` 2-D convolution as im2col + one matmul: the same parameters (``kernel`` HWIO,
    ``bias``), initialisation and outputs as ``nn.Conv(features, kernel_size, strides=stride,
    padding="SAME")`` (tested in float64 to 1e-12), but fast inside ``lax.scan`` on CPU.

    Why: XLA:CPU runs the backward convolutions of ``nn.Conv`` 3-16x slower inside a loop body
    than as a standalone jit (measured with jax 0.10.2 on one core: conv_1's kernel gradient 6 ms
    alone, 103 ms in ``scan``), and a training epoch is a ``scan``. Written with slices and a dot,
    forward and backward stay matmuls and pads: a 60k-image ConvNet epoch (batch 100, one core)
    takes 25 s instead of 163 s.
    """

    features: int
    kernel_size: tuple[int, int] = (5, 5)
    stride: int = 1

    @nn.compact
    def __call__(self, h):
        kh, kw = self.kernel_size
        k = self.param("kernel", _lecun_normal_flat, (kh, kw, h.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return im2col(h, self.kernel_size, self.stride) @ k.reshape(-1, self.features) + b


def _lecun_normal_flat(key, shape, *dtype):
    """``lecun_normal()`` drawn as a ``(kh·kw·C_in, C_out)`` matrix and reshaped: the same values
    as drawing ``shape`` directly (same fan-in, same threefry counters), but XLA:CPU compiles a
    4-D ``random.bits`` ~30x slower (5 s vs 0.2 s with jax 0.10.2)."""
    flat = nn.initializers.lecun_normal()(key, (int(np.prod(shape[:-1])), shape[-1]), *dtype)
    return flat.reshape(shape)


def max_pool_2x2(h: jax.Array) -> jax.Array:
    """2×2 max-pool with stride 2 of ``h (B, H, W, C)``, H and W even, as a reshape + max.

    Same values as ``nn.max_pool(h, (2, 2), strides=(2, 2))``; it avoids XLA:CPU's slow
    select-and-scatter gradient. Where a window's maximum is tied the gradient is split equally
    between the tied entries (``nn.max_pool`` gives it to one); after a ReLU the only ties are at
    0, where the ReLU's own gradient is 0, so training is unaffected.
    """
    b, hh, ww, c = h.shape
    if hh % 2 or ww % 2:
        raise ValueError(f"max_pool_2x2 needs even height and width (got {hh}x{ww})")
    return jnp.max(h.reshape(b, hh // 2, 2, ww // 2, 2, c), axis=(2, 4))


class ConvNet(nn.Module):
    """A small conv net: ``conv_0`` 5×5×``channels[0]`` (stride 1, SAME) → ReLU → 2×2 max-pool →
    ``conv_1`` 5×5×``channels[1]`` (stride 2, SAME) → ReLU → ``dense_0`` (``hidden``, ReLU; sown as
    ``intermediates/features`` for unit analysis) → ``dense_1`` (logits).

    The convolutions are `Conv2D` (im2col; same parameters and outputs as ``nn.Conv``) and the
    pool is `max_pool_2x2`, for speed inside a training ``scan`` on CPU; ``conv_impl="xla"`` uses
    ``nn.Conv`` / ``nn.max_pool`` instead (the same function and parameters; faster where the
    backend has tuned convolutions, e.g. cuDNN). ``benchmarks/conv_training.py`` times both.
    ``conv_specs()`` gives each convolution's input size, stride and padding for
    ``theory.conv_lipschitz`` / ``theory.model_lipschitz_bound``.
    """

    channels: Sequence[int] = (16, 32)
    hidden: int = 100
    num_classes: int = NUM_CLASSES
    conv_impl: Literal["im2col", "xla"] = "im2col"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.conv_impl not in ("im2col", "xla"):
            raise ValueError(f"conv_impl must be 'im2col' or 'xla' (got {self.conv_impl!r})")
        if self.conv_impl == "xla":   # nn.Conv / nn.max_pool: cuDNN on GPU; same parameters
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


@functools.lru_cache(maxsize=None)
def apply_fn(model: nn.Module) -> Callable:
    """``f(variables, x) -> logits`` for ONE example ``x`` (``(28, 28)`` or ``(784,)``), eval mode.

    Cached per model (Flax modules hash by their fields), so ``attacks.*(apply_fn(m), x, y,
    params=variables)`` compiles once per architecture and shape, whatever the parameter values.
    """

    def f(variables, x):
        return model.apply(variables, x[None], train=False)[0]

    return f


def logit_fn(model: nn.Module, variables) -> Callable[[jax.Array], jax.Array]:
    """Per-example eval-mode logit function ``x (28, 28) or (784,) -> logits (10,)`` (or a scalar
    for `LogisticRegression`), closing over ``variables``."""
    f = apply_fn(model)
    return functools.partial(f, variables)


@functools.lru_cache(maxsize=None)
def batch_apply_fn(model: nn.Module) -> Callable:
    """Jitted ``f(variables, x (B, ...)) -> logits (B, ...)`` in eval mode, cached per model."""
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def features_fn(model: nn.Module) -> Callable:
    """``f(variables, x (B, ...)) -> features (B, h)``: the sown last hidden layer (eval mode)."""

    def f(variables, x):
        _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
        return state["intermediates"]["features"][0]

    return f


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


@functools.lru_cache(maxsize=None)
def _jitted_init(model: nn.Module):
    method = getattr(model, "init_all", None)

    def init(key):
        x = jnp.zeros((1, *INPUT_SHAPE), jnp.float32)
        return model.init({"params": key}, x, train=False, method=method)

    return jax.jit(init)


# --------------------------------------------------------------------------- weight decay


def decayed_kernels(params) -> list[tuple[str, jax.Array]]:
    """The model's weight matrices in forward order: ``[(path, kernel), ...]``.

    Order: ``encoder, decoder, classifier`` is reduced to ``encoder, classifier`` (the decoder is
    not on the classification path), ``conv_i`` before ``dense_i``/``maxout_i`` sorted by index, the
    output layer (``dense_out``) last.
    """
    flat = {"/".join(str(getattr(k, "key", k)) for k in path[:-1]): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if str(getattr(path[-1], "key", path[-1])) == "kernel"}

    def order(name):
        base = name.split("/")[-1]
        if base in ("encoder",):
            return (0, 0)
        if base == "classifier":
            return (9, 0)
        if base == "dense_out":
            return (8, 0)
        m = re.match(r"(conv|maxout|dense)_(\d+)", base)
        if m:
            return ({"conv": 1, "maxout": 2, "dense": 3}[m.group(1)], int(m.group(2)))
        return (7, 0)

    return [(n, flat[n]) for n in sorted(flat, key=order) if not n.endswith("decoder")]


def weight_decay_penalty(params, lambdas: Sequence[float]) -> jax.Array:
    """Szegedy's per-layer weight decay ``Σ_i λ_i · Σ W_i² / k_i`` (``k_i`` = units of layer ``i``).

    ``lambdas`` has one value per layer of `decayed_kernels` (or one value for all layers). Biases
    are not decayed.
    """
    kernels = decayed_kernels(params)
    lambdas = tuple(lambdas)
    if len(lambdas) == 1:
        lambdas = lambdas * len(kernels)
    if len(lambdas) != len(kernels):
        raise ValueError(f"weight decay has {len(lambdas)} values but the model has {len(kernels)} "
                         f"layers ({', '.join(n for n, _ in kernels)})")
    total = jnp.zeros((), jnp.float32)
    for lam, (_, w) in zip(lambdas, kernels):
        if lam:
            total = total + lam * jnp.sum(jnp.square(w)) / w.shape[-1]
    return total


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
    return int(sum(x.size for x in jax.tree_util.tree_leaves(variables.get("params", variables))))
