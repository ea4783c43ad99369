"""Deprecated: ``spheres.image_train`` is now `spheres.images.train` (training) and
`spheres.images.evaluate` (evaluation); this name works for one release."""

import warnings

from .images.evaluate import Evaluation, evaluate, evaluation_from_logits, predict_logits  # noqa: F401
from .images.evaluate import probabilities as probabilities_np  # noqa: F401
from .images.train import *  # noqa: F401,F403
from .images.train import safe_name as _safe  # noqa: F401

warnings.warn("spheres.image_train is now spheres.images.train (evaluation: spheres.images.evaluate); "
              "the old name works for one release", DeprecationWarning, stacklevel=2)
