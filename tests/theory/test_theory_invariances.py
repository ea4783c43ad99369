"""Invariances of the quadratic net's error rates (hypothesis): the rate depends on the multiset of
α only (permutations), the outer sphere's event Σ αᵢ R² xᵢ² < 1 depends on α and R only through
α·R² (so scaling R by s and α by 1/s² changes nothing), and the inner rate does not depend on R.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory

pytestmark = pytest.mark.usefixtures("float64")

SETTINGS = settings(max_examples=40, deadline=None)
alphas = st.lists(st.floats(0.3, 3.0), min_size=2, max_size=12).map(np.asarray)


@SETTINGS
@given(alpha=alphas, seed=st.integers(0, 2**31 - 1), sphere=st.sampled_from(["inner", "outer"]))
def test_rates_are_permutation_invariant(alpha, seed, sphere):
    perm = np.random.default_rng(seed).permutation(len(alpha))
    for f, rel in ((theory.exact_error_rate, 1e-9), (theory.clt_error_rate, 1e-12)):
        a = float(f(alpha, sphere=sphere, R=1.3, log=True))
        b = float(f(alpha[perm], sphere=sphere, R=1.3, log=True))
        # tolerance: the exact rate's contour integral sums terms in another order (~1e-12 relative
        # in P, so ~1e-9 absolute in log P at worst); the CLT only reorders two sums
        assert b == pytest.approx(a, rel=rel, abs=1e-9)


@SETTINGS
@given(alpha=alphas, R=st.floats(1.25, 3.0), s=st.floats(0.85, 2.0))   # R·s > 1: a valid radius
def test_outer_rate_depends_on_alpha_times_r_squared(alpha, R, s):
    for f in (theory.exact_error_rate, theory.clt_error_rate):
        a = float(f(alpha, sphere="outer", R=R, log=True))
        b = float(f(alpha / s**2, sphere="outer", R=R * s, log=True))
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(theory.error_coefficients(alpha / s**2, sphere="outer", R=R * s),
                               theory.error_coefficients(alpha, sphere="outer", R=R), rtol=1e-12, atol=1e-14)


@SETTINGS
@given(alpha=alphas, R1=st.floats(1.05, 3.0), R2=st.floats(1.05, 3.0))
def test_inner_rate_ignores_r(alpha, R1, R2):
    assert float(theory.exact_error_rate(alpha, sphere="inner", R=R1, log=True)) == \
        float(theory.exact_error_rate(alpha, sphere="inner", R=R2, log=True))
    np.testing.assert_array_equal(theory.error_coefficients(alpha, R=R1), alpha - 1.0)


@SETTINGS
@given(alpha=alphas)
def test_inner_rate_is_monotone_in_each_alpha(alpha):
    # raising any αᵢ enlarges the event Σ αᵢ xᵢ² > 1: the inner rate cannot fall
    lo = theory.exact_error_rate(alpha)
    hi = theory.exact_error_rate(alpha + np.eye(len(alpha))[0] * 0.2)
    assert hi >= lo * (1 - 1e-9) - 1e-300
