"""Deprecated alias: ``spheres.data`` is now ``spheres.sphere.data``; this name works for one release."""

import warnings

from .sphere.data import *  # noqa: F401,F403
from .sphere.data import __doc__ as _doc  # noqa: F401

warnings.warn("spheres.data is now spheres.sphere.data; the old name works for one release",
              DeprecationWarning, stacklevel=2)
