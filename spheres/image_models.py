"""Deprecated: ``spheres.image_models`` is now `spheres.images.models` (weight decay: `spheres.images.weights`);
this name works for one release."""

import warnings

from .images.models import *  # noqa: F401,F403  (with im2col, Conv2D, max_pool_2x2 from images.layers)
from .images.weights import decayed_kernels, weight_decay_penalty  # noqa: F401

warnings.warn("spheres.image_models is now spheres.images.models; the old name works for one release",
              DeprecationWarning, stacklevel=2)
