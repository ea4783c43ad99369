"""spheres: the experiments of the geometry of adversarial examples (Gilmer et al. 2018; Szegedy et
al. 2013; Goodfellow et al. 2015), with their data, models, training and evaluation.

``spheres.sphere`` is the two-sphere task, ``spheres.images`` the image task, ``spheres.experiments``
the registered experiments (``spheres list``), ``spheres.results`` the run directory and
``spheres.report`` the paper-vs-ours pages. The most used names of the sphere task are re-exported
here.
"""

from .sphere.data import FiniteSet, make_finite_set, online_batch, sample_sphere, sample_two_spheres
from .sphere.evaluate import ErrorRate, clopper_pearson, sphere_error_rate, two_sphere_error_rates
from .sphere.models import (QuadraticNet, SphereMLP, batch_logits, logit_fn, logit_fns,
                            perfect_quadratic_variables)
from .sphere.train import NonFiniteError, TrainState, create_train_state, make_optimizer, train_step

__version__ = "0.1.0"
