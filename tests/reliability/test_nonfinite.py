"""A NaN model through evaluation, through every attack, and NaN / out-of-range input to the
theory functions: never a silent answer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
import theory
from spheres.sphere import evaluate as sev


def nan_binary(x):
    return jnp.sum(x) * jnp.nan


def nan_multi(x):
    return jnp.full(3, jnp.nan) * jnp.sum(x)


def _batched_nan(variables, x):
    return jnp.where(x[:, 0] > 0, jnp.nan, -1.0)    # NaN on about half the points, else class 0


@pytest.mark.parametrize("label", [0, 1])
def test_sphere_evaluation_refuses_nan_logits_or_counts_them(label):
    kw = dict(key=jax.random.key(0), d=3, radius=1.0, label=label, n=2000, chunk=500, progress=False)
    with pytest.raises(sev.NonFiniteOutputError, match=r"of 2,000 model outputs are not finite"):
        sev.sphere_error_rate(_batched_nan, {}, **kw)
    r = sev.sphere_error_rate(_batched_nan, {}, nonfinite="count", **kw)
    if label == 0:      # the finite logits (-1) are right: the errors are the non-finite ones
        assert 800 < r.errors < 1200
    else:               # every finite logit (-1) is wrong, and every non-finite one counts too
        assert r.errors == 2000


def test_image_evaluation_refuses_nan_logits_or_counts_them():
    from spheres.images import evaluate as iev
    from spheres.images import models as im

    logits = np.zeros((4, 10), np.float32)
    logits[:, 3] = 5.0
    logits[1, 0] = np.nan
    y = np.full(4, 3)
    model = im.paper_model("FC10(1e-4)").module if hasattr(im, "paper_model") else None
    with pytest.raises(sev.NonFiniteOutputError, match="1 of 4"):
        iev.evaluation_from_logits(model, logits, y)
    ev = iev.evaluation_from_logits(model, logits, y, nonfinite="count")
    assert ev.error == 0.25 and ev.predictions[1] == -1 and np.isfinite(ev.mean_confidence)


X = jnp.full((4, 3), 0.5)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "sphere_pgd", "nearest_error_l2", "lbfgs"])
def test_no_attack_reports_success_on_a_nan_model(name):
    y1 = jnp.ones(4, jnp.int32)
    if name == "fgsm":
        r = attacks.fgsm(nan_binary, X, y1, eps=0.1)
    elif name == "pgd":
        r = attacks.pgd(nan_binary, X, y1, eps=0.1, num_steps=3, key=jax.random.key(0))
    elif name == "sphere_pgd":
        xs = X / jnp.linalg.norm(X, axis=1, keepdims=True)
        r = attacks.sphere_pgd(nan_binary, xs, y1, step_size=0.01, num_steps=3, key=jax.random.key(0))
    elif name == "nearest_error_l2":
        r = attacks.nearest_error_l2(nan_binary, X, y1, max_radius=1.0, num_steps=3, refine_steps=2,
                                     bisect_steps=3, num_rotations=1)
    else:
        r = attacks.lbfgs(nan_multi, X, jnp.full(4, 2, jnp.int32), bounds=(0.0, 1.0), c_rounds=2,
                          maxiter=3, chunk_size=None)
    assert not bool(jnp.any(r.success)), name


def test_theory_validates_alpha_and_ranges():
    alpha = np.array([0.5, 0.9, np.nan])
    for f in (theory.clt_error_rate, theory.exact_error_rate, theory.is_perfect, theory.fraction_in_range):
        with pytest.raises(ValueError, match="finite"):
            f(alpha)
        with pytest.raises(ValueError, match="shape"):
            f(np.array([]))
    with pytest.raises(ValueError, match="not finite"):
        theory.alphas(np.full((2, 2), np.nan), 1.0, -1.0)
    for mu in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="mu"):
            theory.asymptotic_distance_bound(mu, 10)
        with pytest.raises(ValueError, match="mu"):
            theory.cap_distance_bound(mu, 10)
    with pytest.raises(ValueError, match="d must"):
        theory.asymptotic_cap_distance(0.1, 0)
    with pytest.raises(ValueError, match="R"):
        theory.clt_error_rate(np.array([0.5]), R=np.inf)
    with pytest.raises(ValueError):
        theory.simplified_alpha(1, 3, np.nan, 0.5)
    # valid input still works
    assert 0 < float(theory.clt_error_rate(np.array([0.5, 1.2]))) < 1


def test_theory_and_attacks_refuse_out_of_range_budgets_labels_and_tolerances():
    """Issue 20 item 9: values that used to come back as a number (nan, inf, a negative loss term)."""
    import jax
    import jax.numpy as jnp

    import attacks

    w = jnp.array([1.0, -2.0, 0.5])
    for f in (lambda e: theory.fgsm_linear_logit_change(w, e), lambda e: theory.fgsm_linear_perturbation(w, e),
              lambda e: theory.adversarial_logistic_loss(w, 0.0, w, 1, e),
              lambda e: theory.adversarial_logistic_loss_grad(w, 0.0, w, 1, e)):
        for eps in (-0.1, np.nan, np.inf):
            with pytest.raises(ValueError, match="eps must be finite and >= 0"):
                f(eps)
        f(0.0)                                             # the boundary value is fine
    W, b = jnp.eye(3), jnp.zeros(3)
    for y in (3, -1):
        with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
            theory.min_l2_distance_multiclass(W, b, jnp.ones(3), y=y)
    assert float(theory.min_l2_distance_multiclass(W, b, jnp.array([1.0, 0.0, 0.0]), y=0)) > 0
    with pytest.raises(ValueError, match="num_iters"):
        theory.operator_norm_power_iteration(lambda v: v, (3,), key=jax.random.key(0), num_iters=-1)
    quad = lambda v: v @ v  # noqa: E731
    for kw, match in ((dict(tol=-1.0), "tol"), (dict(ftol=np.nan), "ftol"), (dict(maxiter=0), "maxiter"),
                      (dict(decrease_factor=1.0), "decrease_factor"), (dict(armijo=-1e-4), "armijo")):
        with pytest.raises(ValueError, match=match):
            attacks.LBFGSB(quad, **kw)
    x = jnp.ones((2, 3)) / np.sqrt(3)
    with pytest.raises(ValueError, match="tol"):
        attacks.lbfgs(lambda v: v.sum(-1), x, jnp.array([1, 0]), tol=-1.0)
