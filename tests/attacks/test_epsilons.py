"""Lists of budgets: ``epsilons=[...]`` gives, in one call, the results of separate calls per ε."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _attack_models import K, mlp_apply, trained_mlp, x64  # noqa: F401 -- x64 is a fixture

import attacks
from attacks import _base

KEY = jax.random.key(1)
EPSILONS = [0.05, 0.2, 0.6]

CALLS = {
    "fgsm_linf": lambda x, y, p, **e: attacks.fgsm(mlp_apply, x, y, params=p, **e),
    "fgsm_l2_box": lambda x, y, p, **e: attacks.fgsm(mlp_apply, x, y, params=p, norm="l2",
                                                     bounds=(-6.0, 6.0), **e),
    "pgd_linf": lambda x, y, p, **e: attacks.pgd(mlp_apply, x, y, params=p, num_steps=6, key=KEY, **e),
    "pgd_l2_margin_targeted": lambda x, y, p, **e: attacks.pgd(
        mlp_apply, x, (y + 1) % K, params=p, norm="l2", num_steps=6, loss="margin", targeted=True,
        key=KEY, **e),
    "apgd_linf_ce": lambda x, y, p, **e: attacks.apgd(mlp_apply, x, y, params=p, num_steps=8, key=KEY, **e),
    "apgd_l2_dlr": lambda x, y, p, **e: attacks.apgd(mlp_apply, x, y, params=p, norm="l2", num_steps=8,
                                                     loss="dlr", key=KEY, **e),
}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", list(CALLS))
def test_epsilon_list_equals_separate_calls(name):
    p, x, y = trained_mlp()
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p)
    x, y = jnp.asarray(x[:10], jnp.float64), y[:10]
    together = CALLS[name](x, y, p, epsilons=EPSILONS)
    assert together.x_adv.shape == (len(EPSILONS),) + x.shape
    assert together.success.shape == (len(EPSILONS), x.shape[0])
    for i, eps in enumerate(EPSILONS):
        alone = CALLS[name](x, y, p, eps=eps)
        row = jax.tree.map(lambda a: a[i], together)
        # Same per-example arithmetic, batched once more over ε: discrete outcomes exact, floats
        # to float64 rounding of differently fused loops.
        np.testing.assert_array_equal(row.success, alone.success, err_msg=f"eps={eps}")
        np.testing.assert_array_equal(row.num_steps, alone.num_steps)
        np.testing.assert_allclose(row.x_adv, alone.x_adv, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(row.loss, alone.loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(row.distance, alone.distance, rtol=1e-12, atol=1e-12)
    # Budgets differ, so do the results: the comparison above is not vacuous.
    assert np.all(np.asarray(together.loss[-1]) > np.asarray(together.loss[0]))


def test_fgsm_computes_the_gradient_once_for_all_budgets():
    """The gradient at x does not depend on ε, so under the vmap over budgets it stays unbatched:
    in the program, only the final forward pass (2 matmuls of the MLP, judging success on each
    x_adv) carries the budget axis E = 5; the forward-backward for the gradient has shape B = 4."""
    p, x, y = trained_mlp()
    jaxpr = str(jax.make_jaxpr(lambda: attacks.fgsm(mlp_apply, x[:4], y[:4], params=p,
                                                    epsilons=[0.1, 0.2, 0.3, 0.4, 0.5]))())
    dots = re.findall(r"f32\[([0-9,]+)\] = dot_general", jaxpr)
    assert len(dots) == 6                                   # 2 forward + 2 backward + 2 forward
    assert sum("5" in shape.split(",") for shape in dots) == 2


def test_new_budgets_of_the_same_length_do_not_recompile():
    p, x, y = trained_mlp()
    attacks.pgd(mlp_apply, x, y, params=p, epsilons=[0.1, 0.2], num_steps=3, key=KEY)
    cached = _base._run_batched._cache_size()
    attacks.pgd(mlp_apply, x, y, params=p, epsilons=[0.3, 0.5], num_steps=3, key=KEY)
    assert _base._run_batched._cache_size() == cached


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of eps="),
    ({"eps": 0.1, "epsilons": [0.1]}, "exactly one of eps="),
    ({"epsilons": []}, "non-empty 1-D"),
    ({"epsilons": [[0.1, 0.2]]}, "non-empty 1-D"),
    ({"epsilons": [0.1, -0.2]}, "finite and >= 0"),
    ({"epsilons": [0.1, np.nan]}, "finite and >= 0"),
])
def test_bad_budgets_are_rejected(kwargs, message):
    p, x, y = trained_mlp()
    for attack in (attacks.fgsm, attacks.pgd, attacks.apgd):
        with pytest.raises(ValueError, match=message):
            attack(mlp_apply, x, y, params=p, key=KEY, **kwargs) if attack is not attacks.fgsm else \
                attack(mlp_apply, x, y, params=p, **kwargs)
