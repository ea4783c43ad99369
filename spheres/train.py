"""Deprecated alias: ``spheres.train`` is now ``spheres.sphere.train``; this name works for one release."""

import warnings

from .sphere.train import *  # noqa: F401,F403
from .sphere.train import __doc__ as _doc  # noqa: F401

warnings.warn("spheres.train is now spheres.sphere.train; the old name works for one release",
              DeprecationWarning, stacklevel=2)
