"""Attack-based measurements on a trained sphere model (Gilmer et al. 2018, §3 and §5).

``manifold_analysis`` measures, for ``n`` test points of the inner sphere:

* the distance to the nearest *on-manifold* error found by the sphere attack in ``nearest`` mode
  (mean, median, quantiles; paper ≈ 0.18, unverified),
* the success rate of the *worst-case* manifold attack (maximise the loss on the sphere),
* the distance to the nearest *off-manifold* error (``attacks.nearest_error_l2``, no sphere
  constraint) and the norm of the point found (paper: 0.0796 at ‖x̂‖ ≈ 1.07, unverified),
* for scale, the mean distance between two random inner-sphere points (√2 as d grows).

Sample points the model already misclassifies are counted (``start_errors``) and left out of
the nearest-error statistics, which describe how far an error is from a CORRECTLY classified point
(an error's own distance, 0, would otherwise set the minimum).  ``mean_distance_to_error`` is
Theorem 5.1's d(E) for a sample: 0 for points already in E, the attack's distance otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import attacks

from ..sharding import across_processes, host_local
from . import bracket
from . import data as sdata
from .models import logit_fns


def per_example_logit(model):
    """``(variables, x (d,)) -> scalar`` for ``model`` in eval mode (`models.logit_fns`)."""
    return logit_fns(model).per_example


def distance_stats(v: np.ndarray) -> dict:
    if v.size == 0:
        return {"count": 0}
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "q05": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
            "q95": float(q[4]), "max": float(v.max())}


def nearest_on_manifold(model, variables, x: jax.Array, label: int, *, step_size: float,
                        num_steps: int) -> attacks.AttackResult:
    """The sphere attack in ``nearest`` mode from every row of ``x`` (all with label ``label``)."""
    y = jnp.full((x.shape[0],), label, jnp.int32)
    return attacks.sphere_pgd(per_example_logit(model), x, y, step_size=step_size,
                              num_steps=num_steps, mode="nearest", params=variables)


def mean_distance_to_error(res: attacks.AttackResult, x: jax.Array, model, variables, label: int) -> dict:
    """d(E) over the sample: 0 where the start is already an error, the attack's distance where it
    found one; points where the attack failed are reported separately (their distance is unknown:
    at least what the attack could reach), and the mean counts them at the attack's last distance
    (a lower bound on d(E) for those points)."""
    logits = model.apply(variables, x, train=False)
    start_err = np.asarray((logits > 0) != (label == 1))
    dist = np.where(start_err, 0.0, np.asarray(res.distance))
    ok = start_err | np.asarray(res.success)
    return {"d_E": float(dist.mean()), "d_E_found_only": float(dist[ok].mean()) if ok.any() else None,
            "attack_failed": int((~ok).sum()), "n": int(x.shape[0]),
            "start_errors": int(start_err.sum())}


def manifold_analysis(model, variables, *, d: int, R: float, key: jax.Array, n: int,
                      step_size: float, num_steps: int, worst_case_steps: int,
                      off_manifold_radius: float = 1.0, batch: int = 250) -> dict:
    """Run the attacks of Gilmer §3 on ``n`` inner-sphere points; returns a JSON-able dict and the
    raw per-point arrays (under ``"arrays"``)."""
    k_x, k_pairs = jax.random.split(key)
    x_all = sdata.sample_sphere(k_x, n, d, 1.0)
    f = per_example_logit(model)
    # several processes: each attacks its block of every batch on its own devices (host-local
    # parameters), and every process gathers all rows; on one process this is the plain loop
    local = host_local(variables) if jax.process_count() > 1 else variables

    def attack_block(x):
        y = jnp.zeros((x.shape[0],), jnp.int32)
        r = attacks.sphere_pgd(f, x, y, step_size=step_size, num_steps=num_steps, mode="nearest",
                               params=local)
        w = attacks.sphere_pgd(f, x, y, step_size=step_size, num_steps=worst_case_steps,
                               mode="worst_case", params=local)
        o = attacks.nearest_error_l2(f, x, y, max_radius=off_manifold_radius, params=local)
        return {"near_d": r.distance, "near_ok": r.success, "worst_ok": w.success, "off_d": o.distance,
                "off_ok": o.success, "off_norm": o.x_adv_norm}

    blocks = [across_processes(attack_block, x_all[i:i + batch]) for i in range(0, n, batch)]
    near_d, near_ok, worst_ok, off_d, off_ok, off_norm = (
        np.concatenate([np.asarray(b[k]) for b in blocks])
        for k in ("near_d", "near_ok", "worst_ok", "off_d", "off_ok", "off_norm"))
    start_err = np.concatenate([np.asarray(model.apply(local, x_all[i:i + batch], train=False) > 0)
                                for i in range(0, n, batch)])      # inner-sphere points: label 0
    good = ~start_err
    pairs = sdata.sample_sphere(k_pairs, 2 * 10_000, d, 1.0).reshape(2, 10_000, d)
    pair_dist = np.asarray(jnp.linalg.norm(pairs[0] - pairs[1], axis=1))
    # brackets lower <= true distance <= attack, on all n points (before `found` is restricted)
    kind = bracket.bound_kind(model, local)
    lower = across_processes(lambda x: {side: bracket.lower_bounds(model, local, x, 0, on_manifold=side == "on")[0]
                                        for side in ("on", "off")}, x_all)
    on_lower, off_lower = np.asarray(lower["on"], np.float64), np.asarray(lower["off"], np.float64)
    on_bracket = bracket.bracket_stats(on_lower, near_d, near_ok, start_err, kind)
    off_bracket = bracket.bracket_stats(off_lower, off_d, off_ok, start_err, kind)
    near_ok, worst_ok, off_ok = near_ok & good, worst_ok & good, off_ok & good
    n_good = int(good.sum())
    i_min = int(np.argmin(np.where(off_ok, off_d, np.inf))) if off_ok.any() else None
    out = {
        "n_points": n, "start_errors": int(start_err.sum()), "n_correct": n_good,
        # every statistic below is over the n_correct correctly classified starting points
        "on_manifold_nearest": {"found": int(near_ok.sum()),
                                "fraction_found": float(near_ok.sum() / max(n_good, 1)),
                                "distance": distance_stats(near_d[near_ok]), "bracket": on_bracket},
        "worst_case": {"success": int(worst_ok.sum()),
                       "success_rate": float(worst_ok.sum() / max(n_good, 1))},
        "off_manifold_nearest": {"found": int(off_ok.sum()), "distance": distance_stats(off_d[off_ok]),
                                 "norm_at_min": float(off_norm[i_min]) if i_min is not None else None,
                                 "norm": distance_stats(off_norm[off_ok]), "bracket": off_bracket},
        "random_pair_distance": distance_stats(pair_dist),
    }
    arrays = {"start_error": start_err, "on_manifold_distance": near_d, "on_manifold_found": near_ok,
              "worst_case_success": worst_ok, "off_manifold_distance": off_d,
              "off_manifold_found": off_ok, "off_manifold_norm": off_norm,
              "on_manifold_lower": on_lower, "off_manifold_lower": off_lower}
    return out, arrays
