"""The two-sphere task (Gilmer et al. 2018): data, models, training, evaluation, manifold attacks.

``data`` (sampling on spheres), ``models`` (`SphereMLP`, `QuadraticNet`, the logit-function
builder), ``train`` (the one sphere trainer: a jitted ``lax.scan`` over chunks of steps),
``evaluate`` (streaming error rates with exact intervals), ``manifold`` (on- and off-manifold
nearest errors of a trained model), ``quadratic`` (a trained quadratic net through the theory).
Nothing here reads an experiment config or writes a run directory.
"""

from . import data, evaluate, manifold, models, quadratic, train

__all__ = ["data", "evaluate", "manifold", "models", "quadratic", "train"]
