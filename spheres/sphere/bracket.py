"""Brackets on the distance to the nearest error: ``lower <= true <= attack`` (Gilmer et al. 2018, §5).

An attack only ever overstates a point's distance to its nearest error (it may miss a nearer one).
The lower end comes from the theory package:

* quadratic net: the EXACT distance (``theory.exact_nearest_error``, float64), so the bracket is a
  point and ``attack / exact`` is the attack's optimality gap;
* ReLU + BatchNorm net: CROWN's certified radius (``theory.certify_l2``, BatchNorm folded), a proven
  lower bound: no error lies closer.

Distances are chordal L2 (``‖x̂ − x‖₂``), on the sphere ``‖x̂‖ = ‖x‖`` with ``on_manifold`` (the d(E)
of the paper's Theorem 5.1) or in ``R^d`` without. Points already misclassified count 0 at both ends.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import theory

from . import models

# An attack distance below the lower end by more than this (relative) is reported as a violation,
# i.e. a bug in the attack or the bound: the attack's point is judged in float32, whose logit rounding
# moves the boundary by ~1e-6 relative; the exact solve is float64 on the float32 parameters.
VIOLATION_RTOL = 1e-4
TIGHT_FACTOR = 2.0      # "tight": attack <= 2 · lower
# CROWN's cost per point grows with depth² · width²: ~4·10¹⁰ multiply-adds for the paper's ReLU.w1000.2
# (0.2 s on a CPU core), ~5·10¹² for ReLU.w2000.8 (160 s, and a vacuous radius at initialisation).
# Beyond this budget the lower end is the trivial 0 (kind "none") rather than hours of bound propagation.
CERTIFY_MAX_FLOPS = 2e11


def certify_flops(layers, steps: int) -> float:
    """Multiply-adds of ``theory.certify_l2`` for one point: each of ``steps`` evaluations bounds
    layer ``m`` by a backward pass of ``2 n_m`` rows through the layers below it."""
    sizes = [(W.shape[0], W.shape[1]) for W, _ in layers]
    total = 0.0
    for m, (n_m, _) in enumerate(sizes):
        total += (2 * n_m if m < len(sizes) - 1 else 2) * sum(a * b for a, b in sizes[:m + 1])
    return float(steps * total)


def _float64_variables(variables):
    """The parameters as float64 NumPy (call inside ``jax.enable_x64``)."""
    return jax.tree.map(lambda a: np.asarray(a, np.float64), jax.device_get(variables))


def _has_ellipsoid(variables) -> bool:
    """A quadratic net's error set is bounded by an ellipsoid only when ``b < 0`` (``theory.alphas``)."""
    return float(np.asarray(jax.device_get(variables["params"]["b"]))) < 0


def bound_kind(model, variables, *, certify_steps: int = 8) -> str:
    """The kind of lower end `lower_bounds` gives for this model: ``"exact"``, ``"certified"`` or
    ``"none"`` (no computation beyond reading the parameters)."""
    if isinstance(model, models.QuadraticNet):
        return "exact" if _has_ellipsoid(variables) else "none"
    if isinstance(model, models.SphereMLP):
        layers = theory.layers_from_sphere_mlp(variables)
        return "none" if certify_flops(layers, certify_steps) > CERTIFY_MAX_FLOPS else "certified"
    return "none"


CERTIFY_PILOT = 32        # points certified cold (8 evaluations) to warm-start the rest
CERTIFY_WARM_STEPS = 3    # evaluations per warm-started point: as tight as 8 cold ones (benchmark 10)


def _certify(layers, x, label, *, on_manifold, steps, block):
    """``theory.certify_l2`` radii of ``x (n, d)``: a pilot of ``CERTIFY_PILOT`` points with ``steps``
    cold evaluations, the rest warm-started from the pilot's median positive radius with
    ``CERTIFY_WARM_STEPS`` (``theory.certify`` docstring); a warm radius below half the median is
    searched again cold (an outlier the warm steps could not reach)."""
    y = jnp.full((x.shape[0],), label, jnp.int32)

    def run(rows, **kw):
        res = theory.certify_l2(layers, jnp.asarray(x[rows]), y[rows], on_manifold=on_manifold, block=block, **kw)
        return np.asarray(res.radius, np.float64)

    pilot = run(slice(0, CERTIFY_PILOT), steps=steps)
    if x.shape[0] <= CERTIFY_PILOT:
        return pilot
    warm = pilot[pilot > 0]
    if not warm.size:
        return np.concatenate([pilot, run(slice(CERTIFY_PILOT, None), steps=steps)])
    init = float(np.median(warm))
    rest = run(slice(CERTIFY_PILOT, None), steps=min(steps, CERTIFY_WARM_STEPS), init=init)
    # outliers whose crossing lies far below the pilot's (3 steps of ×1.15 cannot reach it): cold search
    far = CERTIFY_PILOT + np.flatnonzero(rest < 0.5 * init)
    if far.size:
        rest[far - CERTIFY_PILOT] = np.maximum(rest[far - CERTIFY_PILOT], run(far, steps=steps))
    return np.concatenate([pilot, rest])


def lower_bounds(model, variables, x, label: int, *, on_manifold: bool = True, certify_steps: int = 8,
                 certify_block: int = 32) -> tuple[np.ndarray, str]:
    """Per-point lower ends ``(n,)`` (float64 NumPy) and their kind (`bound_kind`): ``"exact"``,
    ``"certified"``, or ``"none"`` (the trivial 0: a quadratic net with ``b >= 0``, a ReLU net beyond
    ``CERTIFY_MAX_FLOPS``, or any other model).

    ``x (n, d)``: points of one sphere with true class ``label`` (0 inner, 1 outer). ``+∞`` where no
    error exists (a perfect quadratic net on the sphere); 0 where ``x`` is already misclassified.
    """
    x = np.asarray(jax.device_get(x))
    n = x.shape[0]
    kind = bound_kind(model, variables, certify_steps=certify_steps)
    if kind == "exact":
        with jax.enable_x64(True):
            alpha, U = theory.alphas_and_axes_from_variables(_float64_variables(variables))
            res = theory.exact_nearest_error(alpha, U, x.astype(np.float64), on_manifold=on_manifold,
                                             y=np.full((n,), label, np.int32))
            return np.asarray(res.distance, np.float64), kind
    if kind == "certified":
        return _certify(theory.layers_from_sphere_mlp(variables), x, label, on_manifold=on_manifold,
                        steps=certify_steps, block=certify_block), kind
    return np.zeros(n), kind        # no bound of ours applies: the trivial 0


def bracket_stats(lower, upper, found, start_error, kind: str) -> dict:
    """Summary of per-point brackets ``lower <= true distance <= upper`` (JSON-able).

    Args:
      lower: ``(n,)`` lower ends (``+∞`` = no error exists). upper: ``(n,)`` the attack's distances.
      found: ``(n,)`` the attack found an error (its ``upper`` is a distance to one).
      start_error: ``(n,)`` already misclassified (both ends 0). kind: ``"exact"`` / ``"certified"``.

    Returns a dict: ``lower_mean`` (over all points; None if some point has no error at all),
    ``upper_mean`` (over all points; None if the attack failed somewhere: its distance is then not an
    upper bound), ``upper_mean_found`` (over the points where it succeeded), ``ratio_mean`` /
    ``ratio_max`` (``upper / lower`` over correct points with both ends finite and ``lower > 0``: the
    optimality gap for ``exact``), ``fraction_tight`` (of correct points with a finite lower end, ``upper <= 2 · lower``),
    ``violations`` (``upper < lower`` beyond ``VIOLATION_RTOL``: must be 0), ``no_error`` (lower = ∞)
    and ``attack_failed`` (of correct points).
    """
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    found, start_error = np.asarray(found, bool), np.asarray(start_error, bool)
    lo = np.where(start_error, 0.0, lower)
    up = np.where(start_error, 0.0, upper)
    correct = ~start_error
    ok = correct & found
    both = ok & np.isfinite(lo) & (lo > 0)
    ratio = up[both] / lo[both]
    n_correct = int(correct.sum())
    n_finite = int((correct & np.isfinite(lo)).sum())
    return {
        "kind": kind, "n": int(lo.size), "n_correct": n_correct,
        "lower_mean": float(lo.mean()) if np.isfinite(lo).all() else None,
        "upper_mean": float(up.mean()) if (ok | start_error).all() else None,
        "upper_mean_found": float(up[ok].mean()) if ok.any() else None,
        "lower_mean_found": float(lo[ok].mean()) if ok.any() and np.isfinite(lo[ok]).all() else None,
        "ratio_mean": float(ratio.mean()) if ratio.size else None,
        "ratio_max": float(ratio.max()) if ratio.size else None,
        "fraction_tight": (float((ok & (up <= TIGHT_FACTOR * lo)).sum() / n_finite) if n_finite else None),
        "violations": int((ok & (up < lo * (1 - VIOLATION_RTOL))).sum()),
        "no_error": int((correct & np.isinf(lo)).sum()),
        "attack_failed": int((correct & ~found).sum()),
    }


def bracket(model, variables, x, label: int, res, *, on_manifold: bool = True, **kw) -> tuple[dict, np.ndarray]:
    """``bracket_stats`` of the attack result ``res`` (an ``attacks.AttackResult`` on ``x``) against
    ``lower_bounds``; returns ``(stats, lower (n,))``."""
    logits = np.asarray(model.apply(variables, x, train=False))
    start_error = (logits > 0) != (label == 1)
    lower, kind = lower_bounds(model, variables, x, label, on_manifold=on_manifold, **kw)
    return bracket_stats(lower, np.asarray(res.distance), np.asarray(res.success), start_error, kind), lower


def format_bracket(b: dict | None) -> str:
    """One line: ``exact 0.1234, attack 0.1240 (×1.005 mean, ×1.03 worst)`` or the certified form."""
    if not b:
        return "-"
    if b["kind"] == "none":
        return "no lower bound (not a quadratic net, or beyond the certification budget); attack " + (
            "-" if b["upper_mean_found"] is None else f"{b['upper_mean_found']:.4f}")

    def f(v):
        return "∞ (no error)" if v is None and b["no_error"] else ("-" if v is None else f"{v:.4f}")

    if b["no_error"] and b["no_error"] == b["n_correct"]:
        found = b["n_correct"] - b["attack_failed"]
        return "exact: no error on this set (d(E) = ∞); " + (
            "the attack found none" if not found else f"the attack claims {found}: VIOLATION")
    if b["upper_mean"] is not None or b["upper_mean_found"] is None:
        s = f"{b['kind']} {f(b['lower_mean'])} ≤ d(E) ≤ attack {f(b['upper_mean'])}"
    else:   # the attack failed somewhere: compare on the points where it succeeded
        s = (f"on the {b['n_correct'] - b['attack_failed']} points the attack solved: {b['kind']} "
             f"{f(b['lower_mean_found'])} ≤ d ≤ attack {f(b['upper_mean_found'])}; attack failed on "
             f"{b['attack_failed']} (mean lower end over all: {f(b['lower_mean'])})")
    if b["ratio_mean"] is not None:
        s += f"; attack/{b['kind']} ×{b['ratio_mean']:.3f} mean, ×{b['ratio_max']:.3f} worst"
    if b["kind"] == "certified" and b["fraction_tight"] is not None:
        s += f"; within ×{TIGHT_FACTOR:g} for {b['fraction_tight']:.0%}"
    if b["violations"]:
        s += f"; {b['violations']} VIOLATIONS (attack below the bound)"
    return s


def exact_d_E(variables, *, n: int, key, label: int = 0, R: float = 1.3) -> float | None:
    """The exact on-manifold ``d(E)`` of a quadratic net over ``n`` uniform points of the inner
    (``label`` 0, radius 1) or outer (radius ``R``) sphere (``theory.exact_mean_distance``, float64);
    ``None`` when ``b >= 0`` (no ellipsoid) or no error exists on the sphere (``d(E) = ∞``)."""
    with jax.enable_x64(True):
        v64 = _float64_variables(variables)
        if not _has_ellipsoid(v64):
            return None
        alpha = theory.alphas_from_variables(v64)
        m = theory.exact_mean_distance(alpha, sphere=("inner", "outer")[label], R=R, n=n, key=key)
        mean = float(m.mean)
    return mean if np.isfinite(mean) else None


DISTANCE_POINTS = 100_000   # points per sphere for an exact d(E): ~0.3 % standard error, seconds at d = 500


def exact_distance_vs_bound(alpha, *, d: int, R: float, key, n: int = DISTANCE_POINTS) -> dict:
    """A quadratic net's exact ``d(E)`` per sphere against Theorem 5.1 at its exact ``μ(E)``.

    ``alpha (d,)`` float64 (``spheres.sphere.quadratic.alphas_of``). For each sphere (inner radius 1,
    outer ``R``): ``d_E`` = ``theory.exact_mean_distance`` over ``n`` uniform points (key
    ``fold_in(key, i)``; None when no error exists: ``d(E) = ∞``), ``log10_mu`` the exact error rate
    (``theory.exact_error_rate``), ``cap_bound`` = radius · ``theory.cap_distance_bound(μ, d)`` and
    ``ratio`` = ``d_E / cap_bound`` (≤ 1 by the theorem, up to the Monte Carlo over points only).
    """
    out = {}
    with jax.enable_x64(True):
        alpha = np.asarray(alpha, np.float64)
        for i, (sphere, radius) in enumerate((("inner", 1.0), ("outer", float(R)))):
            log_mu = float(theory.exact_error_rate(alpha, sphere=sphere, R=R, log=True))
            if not np.isfinite(log_mu):          # μ(E) = 0: no error, d(E) = ∞
                out[sphere] = {"d_E": None, "log10_mu": None, "cap_bound": None, "ratio": None, "n": n}
                continue
            m = theory.exact_mean_distance(alpha, sphere=sphere, R=R, n=n, key=jax.random.fold_in(key, i))
            d_E = float(m.mean)
            bound = radius * float(theory.cap_distance_bound(np.exp(log_mu), d)) if log_mu > -700 else None
            out[sphere] = {"d_E": d_E if np.isfinite(d_E) else None, "log10_mu": float(log_mu / np.log(10)),
                           "cap_bound": bound, "n": n,
                           "ratio": d_E / bound if bound and np.isfinite(d_E) else None,
                           "d_E_correct": float(m.mean_correct) if np.isfinite(float(m.mean_correct)) else None}
    return out


def format_distance_vs_bound(dv: dict | None, sphere: str) -> str:
    """``exact d(E) 0.1234 over 10,000 points; Theorem 5.1 bound 0.1300 at μ = 1e-3: ratio 0.949``."""
    r = (dv or {}).get(sphere)
    if not r:
        return "-"
    if r["d_E"] is None:
        return "no error on the sphere: d(E) = ∞"
    bound = "-" if r["cap_bound"] is None else f"{r['cap_bound']:.4f}"
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
    return (f"exact d(E) {r['d_E']:.4f} over {r['n']:,} points; Theorem 5.1 bound {bound} at "
            f"μ(E) = 10^{r['log10_mu']:.2f} (exact): ratio {ratio}")
