"""theory._common: the validators every theory function uses at its boundary, and the float32 warning.

Each validator accepts the edge of its range and refuses just past it, for scalars and arrays; a
JAX tracer passes through unchecked (inside jit the functions return NaN instead of raising).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from theory import _common as c


def test_check_alpha_names_how_many_entries_are_bad():
    assert c.check_alpha([0.5]) == [0.5]
    with pytest.raises(ValueError, match=r"2 of 5 entries are NaN or inf"):
        c.check_alpha([1.0, np.nan, 0.3, np.inf, 0.2])
    with pytest.raises(ValueError, match=r"1 of 4 entries"):
        c.check_alpha(np.array([[1.0, 2.0], [-np.inf, 0.0]]))
    with pytest.raises(ValueError, match=r"all of 2 entries"):
        c.check_alpha(np.array(["a", "b"]))
    for shape in [(), (0,), (3, 0)]:
        with pytest.raises(ValueError, match=r"shape \(\.\.\., d\) with d >= 1"):
            c.check_alpha(np.zeros(shape))
    # under jit the tracer passes through untouched: no exception, the NaN comes out
    out = jax.jit(c.check_alpha)(jnp.array([np.nan, 1.0]))
    assert np.isnan(float(out[0])) and float(out[1]) == 1.0


@pytest.mark.parametrize("x, closed, ok", [
    (0.0, True, True), (1.0, True, True), (0.5, True, True), (-1e-12, True, False), (1 + 1e-12, True, False),
    (0.0, False, False), (1.0, False, False), (0.5, False, True), (1e-300, False, True),
    (np.nan, True, False), (np.inf, False, False),
    (-0.5, False, False), (1.5, False, False), (-0.5, True, False), (1.5, True, False),   # outside, both ends
])
def test_check_unit_interval_edges(x, closed, ok):
    if ok:
        assert c.check_unit_interval(x, "p", closed=closed) == x
        assert c.check_unit_interval(np.array([x, 0.5]), "p", closed=closed) is not None
    else:
        with pytest.raises(ValueError, match=r"p must lie in " + (r"\[0, 1\]" if closed else r"\(0, 1\)")):
            c.check_unit_interval(x, "p", closed=closed)
        with pytest.raises(ValueError):
            c.check_unit_interval(np.array([0.5, x]), "p", closed=closed)


@pytest.mark.parametrize("d, ok", [(1, True), (500, True), (np.array([1.0, 7.0]), True), (0.999, False),
                                   (0, False), (-3, False), (np.inf, False), (np.nan, False),
                                   (np.array([2.0, 0.5]), False)])
def test_check_positive_dimension(d, ok):
    if ok:
        assert c.check_positive_dimension(d, "d") is d
    else:
        with pytest.raises(ValueError, match="d must be >= 1"):
            c.check_positive_dimension(d, "d")


def test_check_radius_sphere_and_float64_array():
    assert c.check_radius(1.3) == 1.3 and isinstance(c.check_radius(np.float32(2.0)), float)
    for bad in (1.0, 0.9, np.inf, np.nan, np.array([1.3, 1.4])):
        with pytest.raises(ValueError, match="finite scalar > 1"):
            c.check_radius(bad)
    assert c.check_sphere("outer") == "outer"
    with pytest.raises(ValueError, match="'inner' or 'outer'"):
        c.check_sphere("middle")
    a = c.as_float64_array([1, 2], "lam", min_ndim=1)
    assert a.dtype == np.float64 and a.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="at least 1 dimension"):
        c.as_float64_array(3.0, "lam", min_ndim=1)
    with pytest.raises(ValueError, match="lam must be finite"):
        c.as_float64_array([1.0, np.nan], "lam")


def test_validators_let_tracers_through():
    @jax.jit
    def f(a, p, d, r):
        return (c.check_alpha(a).sum() + c.check_unit_interval(p, "p") + c.check_positive_dimension(d)
                + c.check_radius(r))

    # values every validator would refuse outside jit
    assert np.isnan(float(f(jnp.array([np.nan]), 2.0, 0.0, 0.5)))
    seen = []
    jax.jit(lambda a: seen.append(c.is_concrete(1.0, a)) or a)(jnp.ones(2))
    assert seen == [False]                                   # a tracer among the arguments
    assert c.is_concrete(1.0, np.ones(2), jnp.ones(2))


def test_float32_warning_points_at_the_caller_of_the_theory_function():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.warns(theory.PrecisionWarning, match=r"theory\.worst_case_points is running with") as rec:
            theory.worst_case_points(np.eye(3, dtype=np.float32), 1.0, -1.0)
        assert rec[0].filename == __file__
    finally:
        jax.config.update("jax_enable_x64", prev)


def test_options_are_keyword_only():
    """``closed`` and ``min_ndim`` are keyword-only: a third positional argument is refused."""
    with pytest.raises(TypeError):
        c.check_unit_interval(0.5, "p", False)
    with pytest.raises(TypeError):
        c.as_float64_array([1.0], "lam", 1)


@pytest.mark.parametrize("value, minimum, ok", [
    (1, 1, True), (np.int64(3), 1, True), (0, 0, True), (np.uint8(0), 0, True),
    (0, 1, False), (-2, 1, False), (True, 1, False), (np.bool_(True), 1, False),
    (1.0, 1, False), (np.float32(2), 1, False), ("2", 1, False), (None, 1, False),
])
def test_is_int_takes_integers_at_least_minimum_and_never_bools(value, minimum, ok):
    assert c.is_int(value, minimum) is ok
