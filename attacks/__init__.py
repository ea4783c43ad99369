"""Adversarial attacks, model-agnostic, jit + vmap compiled (DESIGN.md, "Contracts").

Every attack takes a PER-EXAMPLE logit function ``logit_fn(x) -> logits`` (a scalar for binary
models, positive meaning class 1; a ``(K,)`` vector for K classes), a batch ``x (B, *input_shape)``
and labels ``y (B,)``, and returns an `AttackResult(x_adv, success, distance, loss, num_steps)`.

Compilation is cached on the ``logit_fn`` OBJECT and the shapes: build it once and reuse it.
``lambda x: model.apply(variables, x[None])[0]`` closes over the parameters, which are then
baked into the compiled program as constants (a new lambda or new parameters recompile).  To
change parameters without recompiling, pass them explicitly: every attack accepts
``params=``, and then calls ``logit_fn(params, x)``::

    f = lambda variables, x: model.apply(variables, x[None])[0]     # defined once
    attacks.pgd(f, x, y, eps=0.1, key=key, params=variables)

Bad inputs raise ``ValueError`` before anything is traced; inside jit, outcomes are data.
"""

from attacks._base import (AttackResult, adversarial_objective, classification_loss, is_adversarial,
                           iterate, margin, predict_class, sigmoid_cross_entropy,
                           softmax_cross_entropy)
from attacks.fgsm import fgsm
from attacks.lbfgs import lbfgs
from attacks.lbfgsb import LBFGSB, LBFGSBResult, LBFGSBState, OptStep
from attacks.nearest import nearest_error_l2
from attacks.pgd import pgd, project_ball, random_start
from attacks.search import MinimalEpsilon, minimal_epsilon
from attacks.sphere import project_to_sphere, slerp, sphere_pgd
from attacks.transfer import TransferResult, predict, transfer_error_rates

__all__ = [
    "AttackResult", "fgsm", "pgd", "sphere_pgd", "nearest_error_l2", "lbfgs", "minimal_epsilon",
    "MinimalEpsilon", "transfer_error_rates", "TransferResult", "predict",
    "LBFGSB", "LBFGSBState", "LBFGSBResult", "OptStep",
    "adversarial_objective", "classification_loss", "is_adversarial", "margin", "predict_class",
    "sigmoid_cross_entropy", "softmax_cross_entropy", "iterate",
    "project_ball", "random_start", "project_to_sphere", "slerp",
]
