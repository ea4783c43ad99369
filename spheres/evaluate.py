"""Deprecated alias: ``spheres.evaluate`` is now ``spheres.sphere.evaluate``; this name works for one release."""

import warnings

from .sphere.evaluate import *  # noqa: F401,F403
from .sphere.evaluate import __doc__ as _doc  # noqa: F401

warnings.warn("spheres.evaluate is now spheres.sphere.evaluate; the old name works for one release",
              DeprecationWarning, stacklevel=2)
