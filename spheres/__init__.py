"""spheres: data, models, training, evaluation and experiments for the geometry of adversarial
examples (Gilmer et al. 2018; Szegedy et al. 2013; Goodfellow et al. 2015)."""

from .data import (FiniteSet, make_finite_set, online_batch, sample_sphere, sample_two_spheres)
from .evaluate import ErrorRate, clopper_pearson, sphere_error_rate, two_sphere_error_rates
from .models import QuadraticNet, SphereMLP, batch_logits, logit_fn, perfect_quadratic_variables
from .train import NonFiniteError, TrainState, create_train_state, make_optimizer, train_step

__version__ = "0.1.0"
