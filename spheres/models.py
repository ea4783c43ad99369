"""Deprecated alias: ``spheres.models`` is now ``spheres.sphere.models``; this name works for one release."""

import warnings

from .sphere.models import *  # noqa: F401,F403
from .sphere.models import __doc__ as _doc  # noqa: F401

warnings.warn("spheres.models is now spheres.sphere.models; the old name works for one release",
              DeprecationWarning, stacklevel=2)
