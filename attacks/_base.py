"""`AttackResult`, the adversarial losses, and the one loop driver every attack runs on.

Every attack is written for ONE example as a pure function ``attack(model, config, example)``
where ``model`` is the per-example logit function ``x -> logits`` (scalar for binary models,
``(K,)`` for K classes), ``config`` a hashable NamedTuple of static settings and ``example`` a
dict of per-example arrays.  `execute` vmaps it over the batch inside one `jax.jit` whose cache
is keyed on ``(attack, logit_fn, config)`` plus the shapes, so a second call with the same
``logit_fn`` object and the same shapes never recompiles.  With a list of budgets it vmaps the
batched attack once more, over ε (``per_eps``): a quantity that does not depend on ε (FGSM's
gradient at x) is then computed once per example, not once per budget.  Inside an attack,
iteration goes through `iterate`: a ``lax.fori_loop`` or, with a ``done`` predicate, a
``lax.while_loop`` that under ``vmap`` freezes each example as soon as it is done (per-example
early stopping).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

LOSSES = ("ce", "margin")
DLR_DENOMINATOR_FLOOR = 1e-12        # Croce & Hein's reference code adds it to z_π1 − z_π3


class AttackResult(NamedTuple):
    """What every attack returns (docs/design.md, "Contracts"); all arrays have leading batch axis B.

    Called with a list of budgets (``epsilons=[ε₁, …, ε_E]``), every field has one more leading
    axis: ``x_adv (E, B, *input_shape)``, the others ``(E, B)``; row i is the result at ε_i, equal
    to a separate call with ``eps=ε_i`` and the same key.  In Foolbox 3's terms (``raw, clipped,
    success = attack(model, x, y, epsilons=...)``) ``x_adv[i]`` is both ``raw[i]`` and
    ``clipped[i]`` -- fixed-ε attacks never leave the ε-ball -- and ``success[i]`` is
    ``success[i]``.

    Attributes:
      x_adv: ``(B, *input_shape)`` the returned point: projected and clipped, best iterate.
      success: ``(B,)`` bool, judged by calling the model on ``x_adv`` itself: the predicted
        class differs from ``y`` (untargeted) or equals the target (targeted).
      distance: ``(B,)`` ``‖x_adv − x‖`` in the attack's norm (L∞ for ``norm="linf"``,
        otherwise L2), always of the returned point, also when ``success`` is False.
      loss: ``(B,)`` the attack's adversarial objective at ``x_adv`` (higher = more adversarial):
        ``L(x_adv, y)`` untargeted, ``−L(x_adv, target)`` targeted, L = cross-entropy or the
        negated margin.
      num_steps: ``(B,)`` int32 iterations the attack ran for this example (see each attack).
    """

    x_adv: jax.Array
    success: jax.Array
    distance: jax.Array
    loss: jax.Array
    num_steps: jax.Array

    @property
    def x_adv_norm(self) -> jax.Array:
        """``(B,)`` L2 norm of each returned point, e.g. Gilmer's ‖x̂‖ ≈ 1.07 off-manifold error."""
        return l2_norm_batch(self.x_adv)


# --------------------------------------------------------------------------- norms


def l2_norm_batch(x: jax.Array) -> jax.Array:
    """``(B, ...) -> (B,)`` per-example L2 norm over all non-batch axes."""
    x = jnp.asarray(x)
    return jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1))


def norm(v: jax.Array, kind: str = "l2") -> jax.Array:
    """Norm of one example ``v`` (any shape) over all its axes: ``"l2"`` or ``"linf"``."""
    if kind == "linf":
        return jnp.max(jnp.abs(v)) if v.size else jnp.zeros((), v.dtype)
    return jnp.sqrt(jnp.sum(jnp.square(v)))


def safe_normalize(v: jax.Array) -> jax.Array:
    """``v / ‖v‖₂`` with 0 for ``v = 0`` (gradient-safe: no NaN from 0/0)."""
    n2 = jnp.sum(jnp.square(v))
    positive = n2 > 0
    inv = jnp.where(positive, lax.rsqrt(jnp.where(positive, n2, 1.0)), 0.0)
    return v * inv


# --------------------------------------------------------------------------- losses


def is_binary(logits: jax.Array) -> bool:
    """Binary models return a scalar logit (positive = class 1); multi-class a vector."""
    return jnp.ndim(logits) == 0


def predict_class(logits: jax.Array) -> jax.Array:
    """Predicted class for one example: ``logit > 0`` (binary) or ``argmax`` (first on ties)."""
    if is_binary(logits):
        return (logits > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def sigmoid_cross_entropy(logit: jax.Array, label: jax.Array) -> jax.Array:
    """``−log σ(±z) = softplus(z) − y·z`` for a scalar logit z and label y ∈ {0, 1}."""
    return jax.nn.softplus(logit) - label.astype(logit.dtype) * logit


def softmax_cross_entropy(logits: jax.Array, label: jax.Array) -> jax.Array:
    """``logsumexp(z) − z_y`` for logits ``z (K,)`` and an integer label y."""
    return jax.nn.logsumexp(logits) - jnp.take(logits, label)


def margin(logits: jax.Array, label: jax.Array) -> jax.Array:
    """Signed margin of class ``label``: positive iff the model prefers it (up to ties).

    Binary: ``(2y − 1)·z``.  Multi-class: ``z_y − max_{j≠y} z_j``, the maximum taken over the
    OTHER classes only (the label's own logit is masked to −∞ before the max, the mistake that
    makes an unmasked "max of all logits" margin identically ≤ 0).
    """
    if is_binary(logits):
        return (2 * label - 1).astype(logits.dtype) * logits
    others = jnp.where(jnp.arange(logits.shape[-1]) == label, -jnp.inf, logits)
    return jnp.take(logits, label) - jnp.max(others)


def dlr_loss(logits: jax.Array, label: jax.Array) -> jax.Array:
    """Difference-of-logits-ratio loss (Croce & Hein 2020, eq. 6), ``K >= 3`` classes:

        DLR(z, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)

    with π the classes sorted by decreasing logit.  Invariant to shifting and (positively)
    scaling the logits, so its gradient direction does not depend on the model's temperature.
    A scalar logit or two classes have no z_π3: ``ValueError`` (use ``"ce"`` or ``"margin"``).
    """
    if is_binary(logits) or logits.shape[-1] < 3:
        raise ValueError("the DLR loss needs K >= 3 classes (it divides by z_π1 − z_π3); for a binary "
                         "or 2-class model use loss='ce' or loss='margin'.")
    top = lax.top_k(logits, 3)[0]
    return -margin(logits, label) / (top[0] - top[2] + DLR_DENOMINATOR_FLOOR)


def classification_loss(logits: jax.Array, label: jax.Array, kind: str = "ce") -> jax.Array:
    """Loss of predicting ``label``: cross-entropy (``"ce"``), negated margin (``"margin"``) or
    the difference-of-logits ratio (``"dlr"``, `dlr_loss`)."""
    if kind == "margin":
        return -margin(logits, label)
    if kind == "dlr":
        return dlr_loss(logits, label)
    if is_binary(logits):
        return sigmoid_cross_entropy(logits, label)
    return softmax_cross_entropy(logits, label)


def adversarial_objective(logits, label, *, loss: str = "ce", targeted: bool = False):
    """The quantity every attack MAXIMISES: ``L(z, y)`` untargeted, ``−L(z, t)`` targeted."""
    value = classification_loss(logits, label, loss)
    return -value if targeted else value


@jax.custom_vjp
def _ce_direction(logits: jax.Array, label: jax.Array, sign: jax.Array) -> jax.Array:
    return sign * classification_loss(logits, label, "ce")


def _ce_direction_fwd(logits, label, sign):
    return _ce_direction(logits, label, sign), (logits, label, sign)


def _ce_direction_bwd(res, ct):
    """The cross-entropy gradient w.r.t. the logits divided by a positive per-example scale, so it
    never underflows: binary σ(z) − y → sign(σ(z) − y) = 1 − 2y; K classes p − e_y →
    (p − e_y) / max_{k≠y} p_k, i.e. exp(z_k − max_{j≠y} z_j) for k ≠ y and minus their sum at y."""
    logits, label, sign = res
    if is_binary(logits):
        g = (1 - 2 * label).astype(logits.dtype)
    else:
        is_y = jnp.arange(logits.shape[-1]) == label
        others = jnp.where(is_y, -jnp.inf, logits)
        w = jnp.where(is_y, 0.0, jnp.exp(others - jnp.max(others)))
        g = w - is_y * jnp.sum(w)
    return (ct * sign * g, None, None)


_ce_direction.defvjp(_ce_direction_fwd, _ce_direction_bwd)


def ascent_objective(logits, label, *, loss: str = "ce", targeted: bool = False):
    """`adversarial_objective` for attacks that use only the DIRECTION of its gradient (FGSM's
    sign, PGD's normalised step, the sphere attack's tangent step): same value, but for
    cross-entropy the gradient is rescaled per example so that it cannot underflow to 0.

    A confident model has σ(z) − y or p − e_y below float32's smallest number (|z| ≳ 90 for
    sigmoid, a logit gap ≳ 90 for softmax): the true gradient is tiny but not zero, yet its float32
    value is exactly 0, sign(0) = 0 and FGSM/PGD do nothing -- on a logistic regression with large
    weights FGSM at ε = 0.25 then "fails" where the closed form moves the logit by ε‖w‖₁. The
    rescaled gradient points the same way whenever the plain one is nonzero (tested). Never use it
    where the gradient's size matters (L-BFGS uses `classification_loss`).
    """
    if loss != "ce":
        return adversarial_objective(logits, label, loss=loss, targeted=targeted)
    return _ce_direction(logits, label, jnp.asarray(-1.0 if targeted else 1.0, logits.dtype))


def is_adversarial(logits, label, *, targeted: bool = False) -> jax.Array:
    """Success on one example: prediction ≠ y (untargeted) or = target (targeted), with every
    logit finite (a NaN or inf output is no class, so never a success)."""
    pred = predict_class(logits)
    finite = jnp.isfinite(logits) if is_binary(logits) else jnp.all(jnp.isfinite(logits), axis=-1)
    return finite & (pred == label if targeted else pred != label)


# --------------------------------------------------------------------------- driver


def iterate(step: Callable, state: Any, num_steps: int, *, done: Callable | None = None):
    """The one loop: ``state = step(i, state)`` for ``i < num_steps``.

    Without ``done`` this is ``lax.fori_loop``.  With ``done(state) -> bool`` it is a
    ``lax.while_loop`` that also stops once ``done`` holds; under ``vmap`` the predicate is
    batched, so each example stops (its state is frozen) on its own -- no shared early stop.

    Returns ``(state, steps_run)`` with ``steps_run`` an int32 scalar.
    """
    if done is None:
        state = lax.fori_loop(0, num_steps, step, state)
        return state, jnp.asarray(num_steps, jnp.int32)

    def cond(carry):
        i, s = carry
        return (i < num_steps) & jnp.logical_not(done(s))

    def body(carry):
        i, s = carry
        return i + 1, step(i, s)

    steps, state = lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state))
    return state, steps


def bind(logit_fn: Callable, params: Any) -> Callable:
    """The per-example model ``x -> logits``: ``logit_fn(x)``, or ``logit_fn(params, x)``."""
    if params is None:
        return logit_fn
    return functools.partial(logit_fn, params)


@functools.partial(jax.jit, static_argnames=("attack", "logit_fn", "config", "chunk_size"))
def _run_batched(attack, logit_fn, config, params, batch, chunk_size=None, per_eps=None, key=None):
    model = bind(logit_fn, params)
    size = jax.tree.leaves(batch)[0].shape[0]
    if key is not None:                  # one key: the per-example keys are its split
        batch = {**batch, "key": jax.random.split(key, size)}

    def run(budget):
        # ``budget`` (one ε and what scales with it) is shared by every example: closed over,
        # not mapped, so per-example work that does not depend on it is not repeated per ε.
        one = lambda example: attack(model, config, {**example, **budget})
        if chunk_size is None or chunk_size >= size:
            return jax.vmap(one)(batch)
        return lax.map(one, batch, batch_size=chunk_size)     # vmapped chunks, one after another

    if per_eps is None:
        return run({})
    return jax.vmap(run)(per_eps)


def execute(attack: Callable, logit_fn: Callable, config: NamedTuple, params: Any,
            batch: dict, *, chunk_size: int | None = None, per_eps: dict | None = None,
            key: jax.Array | None = None) -> AttackResult:
    """Run the per-example ``attack`` over ``batch`` (every leaf has a leading axis B), jitted.

    ``attack``, ``logit_fn`` and ``config`` are static (hashed by identity / value): reuse the same
    ``logit_fn`` object to hit the compilation cache.  ``params`` is a traced pytree argument, so
    new parameter values with the same shapes do not recompile.  ``chunk_size``: vmap that many
    examples at a time (``lax.map`` over chunks) instead of the whole batch; results are the same
    since examples are independent.  ``per_eps``: a dict of ``(E,)`` arrays (the budget and
    whatever scales with it), merged into every example; the result gets a leading ε axis.
    ``key``: one PRNG key, split inside the program into ``batch["key"]`` (B,).
    """
    kwargs = {k: v for k, v in (("chunk_size", chunk_size), ("per_eps", per_eps), ("key", key))
              if v is not None}
    return _run_batched(attack, logit_fn, config, params, batch, **kwargs)


@functools.partial(jax.jit, static_argnames=("logit_fn",))
def predict_batch(logit_fn: Callable, params: Any, x: jax.Array) -> jax.Array:
    """Predicted classes ``(B,)`` int32 of the per-example model ``bind(logit_fn, params)``."""
    model = bind(logit_fn, params)
    return jax.vmap(lambda v: predict_class(model(v)))(x)


def finish(model: Callable, x0, label, x_adv, *, targeted: bool, loss: str,
           num_steps, distance_norm: str = "l2") -> AttackResult:
    """Build one example's `AttackResult`, judging success on the returned ``x_adv`` itself."""
    logits = model(x_adv)
    return AttackResult(
        x_adv=x_adv,
        success=is_adversarial(logits, label, targeted=targeted),
        distance=norm(x_adv - x0, distance_norm),
        loss=adversarial_objective(logits, label, loss=loss, targeted=targeted),
        num_steps=jnp.asarray(num_steps, jnp.int32),
    )


def clip_to_box(x: jax.Array, example: dict) -> jax.Array:
    """Clip to ``[example["lo"], example["hi"]]`` when the attack was given ``bounds``."""
    if "lo" in example:
        return jnp.clip(x, example["lo"], example["hi"])
    return x
