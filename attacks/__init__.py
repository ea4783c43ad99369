"""Adversarial attacks, model-agnostic, jit + vmap compiled (docs/design.md, "Contracts").

Every attack takes a MODEL, a batch ``x (B, *input_shape)`` and labels ``y (B,)`` and returns an
`AttackResult(x_adv, success, distance, loss, num_steps)`.  The model is one of

* ``attacks.Model(fn, batched=..., bounds=..., params=...)``: ``fn`` declared per-example
  (``x -> logits``) or batched (``(B, ...) -> (B,)`` or ``(B, K)``), checked with
  ``jax.eval_shape`` before tracing; ``Model.from_flax(module, variables)`` (Linen) and
  ``Model.from_nnx(module)`` (NNX, split into graph definition and state);
* a callable pytree such as an Equinox module (per-example): its arrays are split off as traced
  parameters automatically;
* a plain PER-EXAMPLE function ``logit_fn(x) -> logits`` (a scalar for binary models, positive
  meaning class 1; a ``(K,)`` vector for K classes), or ``logit_fn(params, x)`` with ``params=``.

``y=None`` attacks the model's own predictions (argmax, or ``logit > 0`` for a binary model),
which avoids label leaking; targeted attacks need their targets.  The fixed-budget attacks
(`fgsm`, `pgd`, `apgd`) take ``eps=`` (scalar or per-example ``(B,)``) or ``epsilons=[...]``:
one call, one result per budget along a leading axis.  `robust_accuracy` streams a dataset
through an attack at several budgets and reports accuracy with exact confidence intervals.

Bounds convention (every attack):
    The input domain belongs to the model: ``attacks.Model(fn, bounds=(lo, hi))`` (scalars or
    arrays broadcastable to one input).  Every attack's ``bounds=`` argument defaults to
    ``None``, which means "the model's bounds" -- unbounded for a plain function or a Model
    declared without bounds; an explicit ``(lo, hi)`` replaces the model's for that call
    (``(-inf, inf)`` removes it).  Whatever box applies, ``x`` must lie inside it and every
    returned point stays inside it (clipped after each step's ball projection; L-BFGS solves
    with it as box constraints).  `sphere_pgd` (points stay on a sphere) and
    `nearest_error_l2` (unconstrained search) cannot keep a box: they refuse a model that
    declares one (``ValueError``) instead of ignoring it.  `lbfgs` on a plain function with no
    ``bounds=`` still clips to the paper's [0, 1] pixel box, with a ``DeprecationWarning``.

Compilation is cached on the model's static part (the function object) and the shapes: build it
once and reuse it.  Parameters passed through ``params=`` / ``Model(params=...)`` are traced, so
new values do not recompile; a closure over the parameters bakes them into the program::

    f = lambda variables, x: module.apply(variables, x[None])[0]     # defined once
    attacks.pgd(f, x, y, eps=0.1, key=key, params=variables)

Bad inputs raise ``ValueError`` before anything is traced; inside jit, outcomes are data.
"""

from attacks._base import (AttackResult, adversarial_objective, classification_loss, dlr_loss,
                           is_adversarial, iterate, margin, predict_class, sigmoid_cross_entropy,
                           softmax_cross_entropy)
from attacks._model import Model
from attacks.apgd import apgd
from attacks.fgsm import fgsm
from attacks.lbfgs import lbfgs
from attacks.lbfgsb import LBFGSB, LBFGSBResult, LBFGSBState, OptStep
from attacks.nearest import nearest_error_l2
from attacks.pgd import pgd, project_ball, random_start
from attacks.robust import RobustAccuracyResult, robust_accuracy
from attacks.search import MinimalEpsilon, minimal_epsilon
from attacks.sphere import project_to_sphere, slerp, sphere_pgd
from attacks.transfer import TransferResult, predict, transfer_error_rates

__all__ = [
    "Model", "AttackResult", "fgsm", "pgd", "apgd", "sphere_pgd", "nearest_error_l2", "lbfgs",
    "minimal_epsilon", "MinimalEpsilon", "robust_accuracy", "RobustAccuracyResult",
    "transfer_error_rates", "TransferResult", "predict",
    "LBFGSB", "LBFGSBState", "LBFGSBResult", "OptStep",
    "adversarial_objective", "classification_loss", "dlr_loss", "is_adversarial", "margin",
    "predict_class", "sigmoid_cross_entropy", "softmax_cross_entropy", "iterate",
    "project_ball", "random_start", "project_to_sphere", "slerp",
]
