"""Deprecated: ``spheres.image_data`` is now `spheres.images.data` (this name works for one release)."""

import warnings

from .images.data import *  # noqa: F401,F403

warnings.warn("spheres.image_data is now spheres.images.data; the old name works for one release",
              DeprecationWarning, stacklevel=2)
