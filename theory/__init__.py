"""Closed forms and estimates for the geometry of adversarial examples.

Gilmer et al. 2018 ("Adversarial Spheres"): the quadratic network's ellipsoid (``quadratic``), its
error rates — CLT, exact, Monte Carlo (``error_rate``), Theorem 5.1's spherical-cap bound
(``bounds``), the simplified k-dimensional model (``simplified``). Goodfellow et al. 2015: linear
closed forms (``linear``). Szegedy et al. 2013: per-layer Lipschitz bounds (``lipschitz``).

Use float64 (``jax.config.update("jax_enable_x64", True)``): the JAX functions warn with
``PrecisionWarning`` where float32 loses accuracy that matters. The exact tail probabilities and the
cap bound are host-side NumPy/SciPy in float64 (not jittable); the rest is jittable ``jax.numpy``.
"""

from ._common import PrecisionWarning
from .bounds import (asymptotic_cap_distance, asymptotic_distance_bound, cap_angle,
                     cap_distance_bound, cap_threshold)
from .error_rate import (ErrorRateEstimate, clt_error_rate, error_coefficients, exact_error_rate,
                         importance_tilt, mc_error_rate, quadratic_form_positive_probability)
from .linear import (adversarial_logistic_loss, adversarial_logistic_loss_grad,
                     fgsm_linear_logit_change, fgsm_linear_perturbation, logistic_loss,
                     min_l2_distance_linear, min_l2_distance_multiclass, min_l2_perturbation_linear)
from .lipschitz import (ConvSpec, LipschitzBound, conv_lipschitz, dense_lipschitz,
                        model_lipschitz_bound, operator_norm_power_iteration, same_padding)
from .quadratic import (WorstCasePoints, alphas, alphas_from_variables, ellipsoid_semi_axes,
                        fraction_in_range, is_perfect, worst_case_points,
                        worst_case_points_from_variables)
from .binomial import clopper_pearson, difference_interval
from .nearest_error import (MeanDistance, NearestErrorResult, alphas_and_axes,
                            alphas_and_axes_from_variables, exact_mean_distance, exact_nearest_error)
from .certify import (CertificateResult, certify_l2, fold_batchnorm, layers_from_sphere_mlp,
                      logit_bounds)
from .simplified import (log_betainc, simplified_alpha, simplified_clt_error_rate,
                         simplified_exact_error_rate)
from .threshold import (OptimalThreshold, optimal_threshold, required_fraction, required_k,
                        threshold_error_rate)
from .simplified_optimal import (FractionCurves, half_input_table, paper_example_interpretations,
                                 required_fraction_curves)

__all__ = [
    # quadratic network (Gilmer §4)
    "alphas", "alphas_from_variables", "is_perfect", "fraction_in_range", "ellipsoid_semi_axes",
    "worst_case_points", "worst_case_points_from_variables", "WorstCasePoints",
    # error rates (Gilmer §4, Prop. 4.1)
    "clt_error_rate", "exact_error_rate", "mc_error_rate", "ErrorRateEstimate",
    "error_coefficients", "quadratic_form_positive_probability", "importance_tilt",
    # Theorem 5.1 (Gilmer §5)
    "cap_threshold", "cap_angle", "cap_distance_bound", "asymptotic_distance_bound",
    "asymptotic_cap_distance",
    # statistics: exact binomial intervals, and two rates compared
    "clopper_pearson", "difference_interval",
    # simplified model (Gilmer §4)
    "simplified_alpha", "simplified_exact_error_rate", "simplified_clt_error_rate", "log_betainc",
    "threshold_error_rate", "optimal_threshold", "OptimalThreshold", "required_k", "required_fraction",
    "required_fraction_curves", "FractionCurves", "half_input_table", "paper_example_interpretations",
    # linear models (Goodfellow §3-5)
    "fgsm_linear_logit_change", "fgsm_linear_perturbation", "min_l2_distance_linear",
    "min_l2_perturbation_linear", "min_l2_distance_multiclass", "logistic_loss",
    "adversarial_logistic_loss", "adversarial_logistic_loss_grad",
    # Lipschitz bounds (Szegedy §4.3)
    "dense_lipschitz", "conv_lipschitz", "model_lipschitz_bound", "ConvSpec", "LipschitzBound", "same_padding",
    "operator_norm_power_iteration",
    # exact nearest errors of the quadratic net (Gilmer §4-5)
    "exact_nearest_error", "exact_mean_distance", "NearestErrorResult", "MeanDistance",
    "alphas_and_axes", "alphas_and_axes_from_variables",
    # certified L2 radii of ReLU (+BatchNorm) nets (CROWN)
    "certify_l2", "logit_bounds", "CertificateResult", "fold_batchnorm", "layers_from_sphere_mlp",
    "PrecisionWarning",
]
