"""`Model`: a classifier as the attacks see it, and how a user's function becomes one.

Every attack runs a PER-EXAMPLE function ``x -> logits`` (a scalar for binary models, positive
meaning class 1; a ``(K,)`` vector for K classes) under ``vmap``, inside one ``jax.jit`` keyed on
that function (a static argument, so it must be hashable) and on its parameters (a traced
pytree, so new values do not recompile).  `resolve` turns whatever the caller passed into that
pair, `Resolved(fn, params, bounds)`:

* a plain callable: per-example, ``fn(x)`` or, with the attack's ``params=``, ``fn(params, x)``;
* ``Model(fn, batched=True)``: ``fn`` takes a batch ``(B, *input_shape) -> (B,)`` or ``(B, K)``;
  the attacks call it as ``fn(x[None])[0]`` on one example (``vmap`` folds the examples back
  into one batch), so the model must treat examples independently (eval mode, no batch norm
  statistics of the batch);
* a callable PYTREE (an Equinox module, or any registered pytree with array leaves): its array
  leaves become the traced ``params`` and the rest (its tree structure, functions, Python
  scalars) the static, hashable part, so the module is never a static argument itself (JAX
  cannot hash arrays);
* `Model.from_flax` (Linen: ``module.apply(variables, x)``) and `Model.from_nnx` (NNX:
  ``nnx.split`` into a static graph definition and a state pytree, ``nnx.merge`` per call).

Before anything is traced, `num_classes` evaluates the declared form abstractly
(``jax.eval_shape``): one example for a per-example function, a batch of `PROBE_BATCH` for a
batched one.  A function that fails there, or returns a shape that does not fit the declared
form, raises one ``ValueError`` naming the declaration, the input shape it was called with and
what came back, with the fix.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

PROBE_BATCH = 2


class Model:
    """A classifier for the attacks: a logit function, its declared form, its input domain.

    Args:
      fn: the logit function.  ``batched=False``: ONE example ``x (*input_shape)`` -> a scalar
        logit (binary, positive = class 1) or ``(K,)`` logits.  ``batched=True``: a batch
        ``(B, *input_shape)`` -> ``(B,)`` or ``(B, K)``.  Called ``fn(params, x)`` when
        ``params`` is given, else ``fn(x)``.  A callable pytree (an Equinox module) is called
        ``fn(x)`` and its arrays are passed to the compiled attack as parameters automatically.
      batched: which of the two forms ``fn`` has (checked with ``jax.eval_shape`` before tracing).
      bounds: the input domain ``(lo, hi)`` (scalars or arrays broadcastable to one input), or
        ``None`` for unbounded inputs.  Every attack keeps its points inside it (see the bounds
        convention in `attacks`).
      params: a pytree passed to ``fn`` as its first argument; traced, so calling an attack again
        with new values of the same shapes does not recompile.

    Example::

        model = attacks.Model(lambda v, x: module.apply(v, x), batched=True, params=variables,
                              bounds=(0.0, 1.0))
        res = attacks.pgd(model, x, eps=0.1, key=jax.random.key(0))   # y=None: attack predictions
    """

    __slots__ = ("fn", "batched", "bounds", "params")

    def __init__(self, fn: Callable, *, batched: bool = False, bounds=None, params: Any = None):
        if not callable(fn):
            raise TypeError(f"Model needs a callable logit function, got {type(fn).__name__}.")
        if not isinstance(batched, (bool, np.bool_)):
            raise TypeError(f"batched must be True or False, got {batched!r}.")
        if bounds is not None and (not isinstance(bounds, (tuple, list)) or len(bounds) != 2):
            raise ValueError(f"bounds must be None or a pair (lo, hi), got {bounds!r}.")
        self.fn, self.batched = fn, bool(batched)
        self.bounds = None if bounds is None else tuple(bounds)
        self.params = params

    @classmethod
    def from_flax(cls, module, variables, *, batched: bool = True, bounds=None, method=None,
                  **apply_kwargs) -> "Model":
        """A Flax Linen module: ``module.apply(variables, x, method=method, **apply_kwargs)``.

        ``batched=True`` (the Linen convention: ``x (B, ...) -> (B, K)``); ``variables`` become
        the traced parameters; ``apply_kwargs`` (e.g. ``train=False``) must be hashable.
        """
        return cls(_LinenApply(module, method, tuple(sorted(apply_kwargs.items()))), batched=batched,
                   bounds=bounds, params=variables)

    @classmethod
    def from_nnx(cls, module, *, batched: bool = True, bounds=None) -> "Model":
        """A Flax NNX module, split into its static graph definition and its state pytree.

        ``graphdef, state = nnx.split(module)``; each call runs ``nnx.merge(graphdef, state)(x)``,
        so the state is traced (new weights do not recompile) and the module object is never a
        static argument.  The state is taken when the Model is built: after changing the module,
        build a new Model.  Put the module in eval mode first (``module.eval()``).
        """
        from flax import nnx

        graphdef, state = nnx.split(module)
        return cls(_NNXApply(graphdef), batched=batched, bounds=bounds, params=state)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return (f"Model({name}, batched={self.batched}, bounds={self.bounds}, "
                f"params={'None' if self.params is None else '<pytree>'})")


@dataclasses.dataclass(frozen=True)
class _LinenApply:
    module: Any
    method: Any
    kwargs: tuple

    def __call__(self, variables, x):
        return self.module.apply(variables, x, method=self.method, **dict(self.kwargs))


@dataclasses.dataclass(frozen=True)
class _NNXApply:
    graphdef: Any

    def __call__(self, state, x):
        from flax import nnx

        return nnx.merge(self.graphdef, state)(x)


class _ArrayLeaf:
    """Marks where an array leaf of a split pytree callable goes back."""

    def __repr__(self) -> str:
        return "<array>"


_ARRAY = _ArrayLeaf()


@dataclasses.dataclass(frozen=True)
class _PytreeCall:
    """The static half of a callable pytree: ``self(arrays, x) = unflatten(arrays)(x)``."""

    treedef: Any
    static_leaves: tuple

    def __call__(self, arrays, x):
        it = iter(arrays)
        leaves = [next(it) if leaf is _ARRAY else leaf for leaf in self.static_leaves]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)(x)


@dataclasses.dataclass(frozen=True)
class _PerExample:
    """A batched function ``(B, ...) -> (B, ...)`` called on one example: ``fn(x[None])[0]``."""

    fn: Callable
    with_params: bool

    def __call__(self, *args):
        *params, x = args
        return self.fn(*params, x[None])[0]


def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


def _split_pytree_callable(fn):
    """``(static, arrays)`` if ``fn`` is a pytree with array leaves, else ``None``."""
    leaves, treedef = jax.tree_util.tree_flatten(fn)
    if not any(_is_array(leaf) for leaf in leaves):
        return None
    static = _PytreeCall(treedef, tuple(_ARRAY if _is_array(leaf) else leaf for leaf in leaves))
    try:
        hash(static)
    except TypeError as err:
        raise TypeError(
            f"{type(fn).__name__} is a callable pytree whose non-array leaves are not hashable ({err}); "
            "mark them static (e.g. eqx.field(static=True)) or pass a function and params=.") from None
    return static, [leaf for leaf in leaves if _is_array(leaf)]


class Resolved(NamedTuple):
    """The model as the compiled attack takes it.

    ``fn``: static, hashable, per-example: ``fn(x)`` if ``params`` is None, else ``fn(params, x)``.
    ``probe``: the function as declared (``(fn_declared, batched)``) for the shape check.
    ``bounds``: the model's declared input domain or None.
    """

    fn: Callable
    params: Any
    bounds: tuple | None
    probe: Callable
    batched: bool


def resolve(logit_fn, params=None) -> Resolved:
    """Normalise ``logit_fn`` (a per-example callable, a callable pytree, or a `Model`) and the
    attack's ``params=`` into a `Resolved`.  Type checks only: nothing is called or traced."""
    if isinstance(logit_fn, Model):
        if params is not None:
            raise ValueError("params were given twice: to the Model and to the attack. Put them in the "
                             "Model: attacks.Model(fn, params=...).")
        fn, params, batched, bounds = logit_fn.fn, logit_fn.params, logit_fn.batched, logit_fn.bounds
    else:
        if not callable(logit_fn):
            raise TypeError(f"logit_fn must be callable (per-example x -> logits) or an attacks.Model, "
                            f"got {type(logit_fn).__name__}.")
        fn, batched, bounds = logit_fn, False, None
    if params is None:
        split = _split_pytree_callable(fn)
        if split is not None:
            fn, params = split
    try:
        hash(fn)
    except TypeError:
        raise TypeError(
            f"the logit function ({type(fn).__name__}) is not hashable, and attacks compile it as a static "
            "argument. Pass its arrays as parameters: attacks.Model(lambda params, x: ..., params=...), or "
            "a callable pytree (e.g. an Equinox module), whose arrays are split off automatically.") from None
    probe = fn
    if batched:
        fn = _PerExample(fn, params is not None)
    return Resolved(fn=fn, params=params, bounds=bounds, probe=probe, batched=batched)


def bounds_for_attack(bounds, model: Resolved):
    """The box an attack uses: its own ``bounds=`` if given, else the model's (None = unbounded)."""
    return model.bounds if bounds is None else bounds


def refuse_bounds(model: Resolved, attack: str, why: str) -> None:
    """For attacks that cannot keep points in a box: refuse a model that declares one."""
    if model.bounds is not None:
        raise ValueError(
            f"{attack} {why}, so it cannot respect the model's bounds {model.bounds}; attack an "
            "attacks.Model without bounds (bounds=None) if leaving the box is intended.")


# --------------------------------------------------------------------------- shape check


def _struct_key(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(leaf)), str(jax.numpy.result_type(leaf))) for leaf in leaves)


@functools.lru_cache(maxsize=512)
def _output_shape(fn, params_key, x_key):
    # Cached so that repeated calls do not re-trace fn (keeps "no retrace" exact).
    params_def, params_leaves = params_key
    params = None if params_def is None else jax.tree_util.tree_unflatten(
        params_def, [jax.ShapeDtypeStruct(s, d) for s, d in params_leaves])
    x = jax.ShapeDtypeStruct(*x_key)
    out = jax.eval_shape(fn, x) if params is None else jax.eval_shape(fn, params, x)
    return tuple(out.shape) if hasattr(out, "shape") else None


def _declared(model: Resolved) -> str:
    if not model.batched:
        return "per-example (a plain function, or attacks.Model(fn, batched=False))"
    return "batched (attacks.Model(fn, batched=True))"


def output_shape(model: Resolved, x) -> tuple | None:
    """Abstract output shape of the model as declared, on one example or a `PROBE_BATCH` batch."""
    input_shape = tuple(x.shape[1:])
    shape = ((PROBE_BATCH,) if model.batched else ()) + input_shape
    x_key = (shape, str(x.dtype))
    params_key = (None, ()) if model.params is None else _struct_key(model.params)
    try:
        try:
            return _output_shape(model.probe, params_key, x_key)
        except TypeError as err:           # unhashable static metadata: evaluate without the cache
            if "unhashable" not in str(err):
                raise
            return _output_shape.__wrapped__(model.probe, params_key, x_key)
    except Exception as err:  # noqa: BLE001 -- any failure of the user's function is reported the same way
        what = "ONE example" if not model.batched else f"a batch of {PROBE_BATCH} examples"
        other = ("If it takes a batch (B, *input_shape) -> (B,) or (B, K), declare it: "
                 "attacks.Model(fn, batched=True)." if not model.batched else
                 "If it takes ONE example, declare attacks.Model(fn, batched=False).")
        raise ValueError(
            f"the model is declared {_declared(model)}, so attacks call it on {what} of shape {shape}; "
            f"there it raised {type(err).__name__}: {_first_line(err)}. {other}") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0].rstrip(".") if text else ""


def num_classes(model: Resolved, x) -> int:
    """2 for a scalar logit, else K; raises ``ValueError`` when the output does not fit the
    declared form."""
    shape = output_shape(model, x)
    input_shape = tuple(x.shape[1:])
    if model.batched:
        ok = shape is not None and len(shape) in (1, 2) and shape[0] == PROBE_BATCH and \
            (len(shape) == 1 or shape[1] >= 2)
        if not ok:
            hint = (" That is the shape of ONE example's logits: if fn takes one example, declare "
                    "attacks.Model(fn, batched=False)." if shape is not None and len(shape) <= 1 else "")
            raise ValueError(
                f"the model is declared {_declared(model)}: called on a batch of shape "
                f"{(PROBE_BATCH,) + input_shape} it must return ({PROBE_BATCH},) (binary logit) or "
                f"({PROBE_BATCH}, K) with K >= 2; it returned {shape}.{hint}")
        return 2 if len(shape) == 1 else int(shape[1])
    if shape is None or len(shape) > 1 or (len(shape) == 1 and shape[0] < 2):
        form = "logit_fn(x)" if model.params is None else "logit_fn(params, x)"
        raise ValueError(
            f"{form} must return a scalar logit (binary) or a vector of K >= 2 class scores for ONE "
            f"example x of shape {input_shape}; it returned shape {shape}. If it returns a batch "
            "axis of one, index it away, e.g. lambda x: model.apply(v, x[None])[0], or declare the "
            "batched function as such: attacks.Model(fn, batched=True).")
    return 2 if len(shape) == 0 else int(shape[0])
