"""(10) The nearest-error bracket: exact distances (quadratic net) and certified radii (ReLU net).

Two halves of one question, how far is the nearest error:

* **Exact, quadratic net** (``theory.exact_nearest_error``, float64): a random ``QuadraticNet``
  (``W ~ N(0, 1/d)``, ``w = 1``, ``b = −1``), its ``(α, U)`` from the SVD, ``n`` uniform points of the unit
  sphere, distance to the decision boundary (no labels, so every point needs a full secular solve):
  ``theory-exact-on`` / ``-off`` with the points given in the eigenbasis (``U=None``: the solver
  alone), ``theory-exact-rotated-on`` with ``x`` in the input basis (adds the two ``n·d²`` rotations),
  and ``theory-mean-distance`` (``exact_mean_distance`` on the outer sphere: sampling + solve).
* **Certified, ReLU net** (``theory.certify_l2``, float32): the d-1000-1000-1 SphereMLP briefly
  trained as in benchmark (3), BatchNorm folded; the on-manifold certificate (8 CROWN evaluations
  per point) against the repo's manifold attack on the same inner-sphere points,
  ``attacks.sphere_pgd(mode="nearest")`` with the experiments' defaults (step 0.01, up to 1000 steps)
  and with 100 steps.

Equal work and soundness: exact points lie on the boundary (and the sphere); every certified radius
is at most the attack's distance wherever the attack succeeded. Goals: 10⁵ exact distances in under
1 s after compile; a certificate within 10× the cost per point of the manifold attack.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import attacks
import theory
from spheres.sphere import bracket
from spheres.sphere import data as sdata

from . import _harness as H
from .sphere_attack import _logit, trained_sphere_mlp

NAME = "nearest_bracket"
TITLE = "(10) Nearest-error bracket: exact distances and CROWN certificates"
PILOT_OF = 1000     # points per sphere in the experiments' brackets (attack_samples at paper scale)
GOAL = "10^5 exact distances (d = 500) in <= 1 s; certificate <= 10x the manifold attack per point"
SIZES = {
    "tiny": dict(d=20, h=40, n=2000, widths=(32, 32), train_steps=200, points=8, cert_steps=4,
                 attack_steps=(100, 20), repeats=2),
    "full": dict(d=500, h=1000, n=100_000, widths=(1000, 1000), train_steps=500, points=32, cert_steps=8,
                 attack_steps=(1000, 100), repeats=3),
}


def quadratic_axes(d: int, h: int, seed: int = 0):
    """``(alpha, U)`` of a randomly initialised quadratic net (``W ~ N(0, 1/d)``, ``w = 1``, ``b = −1``)."""
    W = jax.random.normal(jax.random.key(seed), (h, d), jnp.float64) / np.sqrt(d)
    return theory.alphas_and_axes(W, 1.0, -1.0)


def _exact_impls(cfg, work):
    d, n = cfg["d"], cfg["n"]
    alpha, U = quadratic_axes(d, cfg["h"])
    z = sdata.sample_sphere(jax.random.key(1), n, d, 1.0).astype(jnp.float64)
    x = z @ U.T
    impls = [H.Impl(f"theory-exact-{m}", "jax",
                    lambda on=(m == "on"): theory.exact_nearest_error(alpha, None, z, on_manifold=on),
                    n, "points", work={**work, "basis": "eigen", "on_manifold": m == "on"})
             for m in ("on", "off")]
    impls.append(H.Impl("theory-exact-rotated-on", "jax",
                        lambda: theory.exact_nearest_error(alpha, U, x, on_manifold=True), n, "points",
                        work={**work, "basis": "input", "on_manifold": True}))
    impls.append(H.Impl("theory-mean-distance", "jax",
                        lambda: theory.exact_mean_distance(alpha, sphere="outer", n=n, key=jax.random.key(2)),
                        n, "points", work={**work, "sphere": "outer", "sampling": True},
                        note="samples the points too"))
    return impls, alpha, z


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    d, n = cfg["d"], cfg["n"]
    eq = H.EqualWork()
    with jax.enable_x64(True):
        impls, alpha, z = _exact_impls(cfg, {"d": d, "h": cfg["h"], "points": n, "dtype": "float64"})
        exact, exact_out = H.measure(impls, cfg["repeats"])
        for m in ("on", "off"):
            res = exact_out[f"theory-exact-{m}"]
            p, ok = np.asarray(res.x_adv), np.asarray(res.exists)
            resid = np.abs((p[ok] ** 2) @ np.asarray(alpha) - 1.0)
            eq.flag(f"exact {m}-manifold points lie on the boundary (|Σαp² − 1| <= 1e-10)",
                    bool(np.all(resid <= 1e-10)), {"max_residual": float(resid.max(initial=0.0))})
            eq.flag(f"exact {m}-manifold solves converged", bool(np.all(np.asarray(res.converged))))
        rot = exact_out["theory-exact-rotated-on"].distance
        eq.arrays_close("rotated vs eigenbasis distances", np.asarray(rot),
                        np.asarray(exact_out["theory-exact-on"].distance), rtol=1e-9, atol=1e-12,
                        names=("rotated", "eigen"))
        mean = exact_out["theory-mean-distance"]
        quad_extra = {"mean_distance_outer": float(mean.mean), "alpha_range": [float(alpha.min()), float(alpha.max())]}

    model, variables = trained_sphere_mlp(d, cfg["widths"], cfg["train_steps"])
    layers = theory.layers_from_sphere_mlp(variables)
    B = cfg["points"]
    x0 = sdata.sample_sphere(jax.random.key(5), B, d, 1.0)
    y = jnp.zeros((B,), jnp.int32)
    logit = lambda v, x: _logit(model, v, x)
    long_steps, short_steps = cfg["attack_steps"]
    cwork = {"model": f"SphereMLP{tuple(cfg['widths'])}", "d": d, "points": B, "dtype": "float32"}
    cold = theory.certify_l2(layers, x0, y, on_manifold=True, steps=cfg["cert_steps"]).radius
    init = float(np.median(np.asarray(cold)[np.asarray(cold) > 0])) if np.any(np.asarray(cold) > 0) else 0.0
    warm_steps = min(cfg["cert_steps"], bracket.CERTIFY_WARM_STEPS)
    cimpls = [
        H.Impl("theory-certify-on", "jax",
               lambda: theory.certify_l2(layers, x0, y, on_manifold=True, steps=cfg["cert_steps"]), B,
               "points", work={**cwork, "crown_evaluations": cfg["cert_steps"]}),
        H.Impl("theory-certify-on-warm", "jax",
               lambda: theory.certify_l2(layers, x0, y, on_manifold=True, steps=warm_steps, init=init), B,
               "points", work={**cwork, "crown_evaluations": warm_steps, "init": "median of the cold radii"}),
        H.Impl(f"sphere_pgd-{long_steps}", "jax",
               lambda: attacks.sphere_pgd(logit, x0, y, step_size=0.01, num_steps=long_steps, mode="nearest",
                                          params=variables), B, "points", work={**cwork, "steps": long_steps}),
        H.Impl(f"sphere_pgd-{short_steps}", "jax",
               lambda: attacks.sphere_pgd(logit, x0, y, step_size=0.01, num_steps=short_steps,
                                          mode="nearest", params=variables), B, "points",
               work={**cwork, "steps": short_steps}),
    ]
    cert, cert_out = H.measure(cimpls, cfg["repeats"])
    radius = np.asarray(cert_out["theory-certify-on"].radius)
    warm_radius = np.asarray(cert_out["theory-certify-on-warm"].radius)
    eq.flag("warm start (3 evaluations) within 10 % of the cold radii (8) on average",
            bool(warm_radius.mean() >= 0.9 * radius.mean()),
            {"warm_mean": float(warm_radius.mean()), "cold_mean": float(radius.mean())})
    for name in cert:
        if name.startswith("sphere_pgd"):
            att = cert_out[name]
            ok = np.asarray(att.success)
            for label, r in (("cold", radius), ("warm", warm_radius)):
                eq.flag(f"{label} certified radius <= {name} distance where it succeeded",
                        bool(np.all(r[ok] <= np.asarray(att.distance)[ok] * (1 + 1e-5) + 1e-6)),
                        {"attack_successes": int(ok.sum())})
    records = {**exact, **cert}
    solver_s = records["theory-exact-on"]["median_s"] * 1e5 / n
    per_point = {k: records[k]["median_s"] / B for k in cert}
    # spheres.sphere.bracket's policy over PILOT_OF points: a cold pilot of CERTIFY_PILOT, the rest warm
    pilot = bracket.CERTIFY_PILOT / PILOT_OF
    policy = pilot * per_point["theory-certify-on"] + (1 - pilot) * per_point["theory-certify-on-warm"]
    attack = per_point[f"sphere_pgd-{long_steps}"]
    goals = [{"what": "exact on-manifold distances, 10^5 points (eigenbasis, median)", "measured": f"{solver_s:.2f} s",
              "best": f"{records['theory-exact-on']['min_s'] * 1e5 / n:.2f} s", "goal": "<= 1 s",
              "met": bool(solver_s <= 1.0)},
             {"what": (f"certificate / sphere_pgd-{long_steps} cost per point (median): the bracket's policy over "
                       f"{PILOT_OF} points (cold pilot of {bracket.CERTIFY_PILOT}, the rest warm); cold alone "
                       f"{per_point['theory-certify-on'] / attack:.1f}x"),
              "measured": f"{policy / attack:.2f}x", "best": "-", "goal": "<= 10x", "met": bool(policy <= 10 * attack)}]
    comps = [H.compare(records, eq, f"sphere_pgd-{long_steps}", "theory-certify-on",
                       what=f"sphere_pgd-{long_steps} vs certificate (points/s)"),
             H.compare(records, eq, "theory-exact-on", "theory-exact-rotated-on", what="eigenbasis vs rotated")]
    extra = {**quad_extra, "certified_radius_mean": float(radius.mean()),
             "warm_certified_radius_mean": float(warm_radius.mean()), "seconds_per_point": per_point,
             "policy_seconds_per_point": policy,
             "attack_mean_distance": {k: float(np.asarray(cert_out[k].distance)[np.asarray(cert_out[k].success)].mean())
                                      if np.any(np.asarray(cert_out[k].success)) else None
                                      for k in cert if k.startswith("sphere_pgd")}}
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps,
            "goals": goals, "extra": extra}
