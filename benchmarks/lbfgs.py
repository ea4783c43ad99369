"""(5) Batched box-constrained L-BFGS adversarial examples (Szegedy et al. 2013), c search included.

Targeted attack (target = (label + 1) mod 10) on the first test images of Fashion-MNIST, for
softmax regression (FC10(1e-4)) and the sigmoid MLP FC100-100-10, each trained briefly with the
library's loop. Every implementation runs the SAME c search per example (start at ``c_init``,
×``c_factor`` after a success until a failure brackets it, ÷ after a failure, then geometric
bisection; ``c_rounds`` solves of ``min c‖x'−x‖² + CE(x', t)`` over the box [0, 1], each from x'=x,
keeping the smallest successful x'), with the same iteration cap, history and tolerances:

* ``jax-lbfgs``: ``attacks.lbfgs`` (its own batched projected L-BFGS, vmapped over the batch);
* ``scipy-per-example``: ``scipy.optimize.minimize(method="L-BFGS-B")`` called per example and
  per c, the objective and its gradient in NumPy float64 (closed-form backprop, no framework
  overhead), ``maxcor`` = history, ``gtol`` = tol (both the ∞-norm of the projected gradient),
  ``ftol`` = ftol;
* ``jaxopt-vmap`` (when jaxopt is importable): ``jaxopt.LBFGSB`` in the same c search, vmapped
  (batch 64 only: its nested while loops run in lock-step over the batch, so it is slow).

SciPy is timed once per example (per-example work does not depend on the batch), so its rate at
batch 64 and 256 comes from the same pass. Equal work: same examples, targets, c schedule, rounds,
iteration cap; outcome: success rate within noise and mean distortion of the examples both found
(Szegedy's distortion ‖r‖₂/√784) within 10 % plus noise.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import attacks
from spheres.images import models as im

from . import _harness as H
from . import _image

NAME = "lbfgs"
TITLE = "(5) Box-constrained L-BFGS attack, c search"
GOAL = ">= 10x SciPy per example at batch 256, same distortion"
SIZES = {
    "tiny": dict(models=("FC10(1e-4)",), batches=(8,), n_train=2000, epochs=1, c_rounds=3, maxiter=10,
                 repeats=2, scipy_repeats=1, jaxopt_batch=None),
    "full": dict(models=("FC10(1e-4)", "FC100-100-10"), batches=(64, 256), n_train=60_000, epochs=3,
                 c_rounds=8, maxiter=50, repeats=5, scipy_repeats=1, jaxopt_batch=64),
}
SETTINGS = dict(c_init=1.0, c_factor=10.0, tol=1e-5, ftol=2.2e-9, history_size=10)


# --------------------------------------------------------------------------------------------------
# NumPy model + gradient, for SciPy
# --------------------------------------------------------------------------------------------------


def numpy_model(variables):
    """``value_and_grad(x (784,), t) -> (CE(x, t), ∂CE/∂x)`` and ``predict(x)`` in float64."""
    p = variables["params"]
    layers = [(np.asarray(p[f"dense_{i}"]["kernel"], np.float64), np.asarray(p[f"dense_{i}"]["bias"], np.float64))
              for i in range(len(p))]

    def forward(x):
        hs = [x]
        for W, b in layers[:-1]:
            hs.append(1.0 / (1.0 + np.exp(-(hs[-1] @ W + b))))
        W, b = layers[-1]
        return hs, hs[-1] @ W + b

    def value_and_grad(x, t):
        hs, z = forward(x)
        m = z.max()
        e = np.exp(z - m)
        s = e.sum()
        ce = m + math.log(s) - z[t]
        dz = e / s
        dz[t] -= 1.0
        g = layers[-1][0] @ dz
        for (W, _), h in zip(reversed(layers[:-1]), reversed(hs[1:])):
            g = W @ (g * h * (1.0 - h))
        return ce, g

    def predict(x):
        return int(np.argmax(forward(x)[1]))

    return value_and_grad, predict


def scipy_attack(value_and_grad, predict, x, t, *, c_rounds, maxiter, c_init, c_factor, tol, ftol,
                 history_size):
    """Szegedy's c search around SciPy's L-BFGS-B for ONE example (the library's schedule)."""
    from scipy.optimize import Bounds, minimize

    x = np.asarray(x, np.float64).ravel()
    if predict(x) == t:
        return x, True, 0
    bounds = Bounds(np.zeros(x.size), np.ones(x.size))
    c, c_ok, c_fail = c_init, 0.0, math.inf
    best, best_d, best_ok, iters = x, 0.0, False, 0
    for _ in range(c_rounds):
        def f(xp, c=c):
            ce, g = value_and_grad(xp, t)
            r = xp - x
            return c * r @ r + ce, 2.0 * c * r + g

        res = minimize(f, x, jac=True, method="L-BFGS-B", bounds=bounds,
                       options=dict(maxiter=maxiter, maxcor=history_size, gtol=tol, ftol=ftol))
        iters += res.nit
        ok = predict(res.x) == t
        d = float(np.linalg.norm(res.x - x))
        if ok and (not best_ok or d < best_d):
            best, best_d, best_ok = res.x, d, True
        if ok:
            c_ok = max(c_ok, c)
        else:
            c_fail = min(c_fail, c)
        c = c_ok * c_factor if math.isinf(c_fail) else (c_fail / c_factor if c_ok == 0 else math.sqrt(c_ok * c_fail))
    return best, best_ok, iters


# --------------------------------------------------------------------------------------------------
# jaxopt under vmap
# --------------------------------------------------------------------------------------------------


def jaxopt_attack(model, *, c_rounds, maxiter, c_init, c_factor, tol, history_size, **_):
    import jaxopt

    def one(v, x0, t):
        def objective(xp, c):
            z = model.apply(v, xp[None], train=False)[0]
            return c * jnp.sum((xp - x0) ** 2) + jax.nn.logsumexp(z) - z[t]

        solver = jaxopt.LBFGSB(fun=objective, maxiter=maxiter, tol=tol, history_size=history_size)
        box = (jnp.zeros_like(x0), jnp.ones_like(x0))
        pred = lambda xp: jnp.argmax(model.apply(v, xp[None], train=False)[0])  # noqa: E731
        already = pred(x0) == t

        def round_(i, s):
            c, c_ok, c_fail, best, best_d, best_ok = s
            xp = solver.run(x0, box, c).params
            ok = pred(xp) == t
            d = jnp.sqrt(jnp.sum((xp - x0) ** 2))
            better = ok & (~best_ok | (d < best_d))
            c_ok = jnp.where(ok, jnp.maximum(c_ok, c), c_ok)
            c_fail = jnp.where(ok, c_fail, jnp.minimum(c_fail, c))
            c = jnp.where(jnp.isinf(c_fail), c_ok * c_factor,
                          jnp.where(c_ok == 0, c_fail / c_factor, jnp.sqrt(c_ok * c_fail)))
            return (c, c_ok, c_fail, jnp.where(better, xp, best), jnp.where(better, d, best_d), best_ok | ok)

        f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        s = (f32(c_init), f32(0.0), f32(jnp.inf), x0, f32(0.0), jnp.zeros((), bool))
        s = jax.lax.cond(already, lambda s: s, lambda s: jax.lax.fori_loop(0, c_rounds, round_, s), s)
        ok = s[5] | already
        return jnp.where(already, x0, s[3]), ok, jnp.where(already, 0.0, s[4])

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


# --------------------------------------------------------------------------------------------------


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    batches = tuple(cfg["batches"])
    nmax = max(batches)
    x_np, y_np = _image.test_examples(nmax)
    t_np = ((y_np + 1) % 10).astype(np.int32)
    # Flattened (B, 784), the vector SciPy's and jaxopt's solvers take; attacks.lbfgs accepts
    # (B, 28, 28) images too (tests/attacks/test_attacks_lbfgsb.py), and the models flatten their input.
    x_np = x_np.reshape(x_np.shape[0], -1)
    lb = dict(c_rounds=cfg["c_rounds"], maxiter=cfg["maxiter"], **SETTINGS)
    try:
        import jaxopt  # noqa: F401
        have_jaxopt, jaxopt_reason = True, ""
    except ImportError as e:
        have_jaxopt, jaxopt_reason = False, f"jaxopt not importable ({e}); it is optional"

    impls, skipped, extra = [], [], {"dataset": _image.dataset_label(), "settings": lb,
                                     "targets": "(label + 1) mod 10"}
    scipy_results = {}
    eq = H.EqualWork()
    for name in cfg["models"]:
        recipe = im.paper_model(name)
        variables, acc = _image.trained(recipe.module, cfg["n_train"], cfg["epochs"],
                                        weight_decay=tuple(recipe.weight_decay))
        extra[f"{name}_test_accuracy_2000"] = acc
        logit = im.apply_fn(recipe.module)
        work = {"model": name, "params": im.count_params(variables), **lb}
        for B in batches:
            xb, tb = jnp.asarray(x_np[:B]), jnp.asarray(t_np[:B])
            impls.append(H.Impl(f"{name}/jax-lbfgs/B={B}", "jax", functools.partial(
                attacks.lbfgs, logit, xb, tb, bounds=(0.0, 1.0), c_init=lb["c_init"], c_rounds=lb["c_rounds"],
                c_factor=lb["c_factor"], maxiter=lb["maxiter"], tol=lb["tol"], ftol=lb["ftol"],
                history_size=lb["history_size"], params=variables),
                B, "examples", work={**work, "batch": B}))
        if have_jaxopt and cfg["jaxopt_batch"]:
            B = cfg["jaxopt_batch"]
            jo = jaxopt_attack(recipe.module, **lb)
            impls.append(H.Impl(f"{name}/jaxopt-vmap/B={B}", "jax", functools.partial(
                jo, variables, jnp.asarray(x_np[:B]), jnp.asarray(t_np[:B])), B, "examples",
                repeats=1, work={**work, "batch": B}, note="jaxopt.LBFGSB, same c search, vmapped"))
        else:
            skipped.append({"name": f"{name}/jaxopt-vmap",
                            "reason": jaxopt_reason or "size tiny (jaxopt under vmap compiles for ~30 s)"})

        # SciPy: one pass over nmax examples, each example timed on its own
        vg, predict = numpy_model(variables)
        per_example, xs_adv, oks, iters = [], [], [], []

        def scipy_pass(vg=vg, predict=predict, per_example=per_example, xs_adv=xs_adv, oks=oks, iters=iters):
            per_example.clear(), xs_adv.clear(), oks.clear(), iters.clear()
            for i in range(nmax):
                t0 = time.perf_counter()
                xa, ok, it = scipy_attack(vg, predict, x_np[i], int(t_np[i]), **lb)
                per_example.append(time.perf_counter() - t0)
                xs_adv.append(xa)
                oks.append(ok)
                iters.append(it)
            return None

        impls.append(H.Impl(f"{name}/scipy-per-example/B={nmax}", "scipy", scipy_pass, nmax, "examples",
                            repeats=cfg["scipy_repeats"], warmup=False, work={**work, "batch": nmax},
                            note="scipy.optimize.minimize(L-BFGS-B) per example and per c, NumPy float64"))
        scipy_results[name] = (per_example, xs_adv, oks, iters)

    records, outputs = H.measure(impls, cfg["repeats"], skipped)

    comps = []
    for name in cfg["models"]:
        per_example, xs_adv, oks, s_iters = scipy_results[name]
        sp = f"{name}/scipy-per-example/B={nmax}"
        s_ok = np.asarray(oks)
        s_dist = np.asarray([np.linalg.norm(xa - x_np[i].ravel()) for i, xa in enumerate(xs_adv)])
        for B in batches:
            # SciPy's rate at batch B: the same examples' per-example times (last pass)
            sub = f"{name}/scipy-per-example/B={B}"
            if B != nmax:
                rec = dict(records[sp])
                rec.update(units_per_call=float(B), times_s=[float(np.sum(per_example[:B]))],
                           note=rec["note"] + f"; the first {B} examples of the B={nmax} pass")
                rec["work"] = {**rec["work"], "batch": B}
                H._summarise(rec)
                records[sub] = rec
            jx = f"{name}/jax-lbfgs/B={B}"
            eq.scope = f"{name} B={B}"
            r = outputs[jx]
            j_ok, j_dist = np.asarray(r.success), np.asarray(r.distance)
            eq.same(f"{name} B={B}: settings and batch",
                    {k: {f: v for f, v in records[k]["work"].items() if f != "note"} for k in (jx, sub)})
            eq.rate_within_noise(f"{name} B={B}: success rate", {jx: j_ok, sub: s_ok[:B]})
            both = j_ok & s_ok[:B]
            eq.mean_within_noise(f"{name} B={B}: mean distortion where both succeed",
                                 {jx: j_dist[both] / 28.0, sub: s_dist[:B][both] / 28.0}, rtol=0.10)
            comps.append(H.compare(records, eq, jx, sub, goal=10.0 if B == 256 else None, scope=eq.scope))
            steps = np.asarray(r.num_steps)
            extra[f"{name}_B{B}"] = {"success_rate": {"jax": float(j_ok.mean()), "scipy": float(s_ok[:B].mean())},
                                     # vmapped while loops run until the batch's slowest example is done:
                                     # mean/max L-BFGS iterations bounds the useful fraction of the work
                                     "lbfgs_iterations_mean_max": [float(steps.mean()), int(steps.max())],
                                     "scipy_iterations_mean": float(np.mean(s_iters[:B])),
                                     "mean_distortion_both": {"jax": float(np.mean(j_dist[both]) / 28.0) if both.any() else None,
                                                              "scipy": float(np.mean(s_dist[:B][both]) / 28.0) if both.any() else None}}
        jo = f"{name}/jaxopt-vmap/B={cfg['jaxopt_batch']}"
        if jo in outputs:
            B = cfg["jaxopt_batch"]
            _, o_ok, o_dist = map(np.asarray, outputs[jo])
            eq.scope = f"{name} jaxopt B={B}"
            eq.rate_within_noise(f"{name} jaxopt B={B}: success rate", {jo: o_ok, sp: s_ok[:B]})
            both = o_ok & s_ok[:B]
            eq.mean_within_noise(f"{name} jaxopt B={B}: mean distortion where both succeed",
                                 {jo: o_dist[both] / 28.0, sp: s_dist[:B][both] / 28.0}, rtol=0.10)
            comps.append(H.compare(records, eq, f"{name}/jax-lbfgs/B={B}", jo, scope=eq.scope))
            comps.append(H.compare(records, eq, jo, f"{name}/scipy-per-example/B={B}", scope=eq.scope))
            extra[f"{name}_jaxopt_B{B}"] = {"success_rate": float(o_ok.mean()),
                                            "mean_distortion_both": float(np.mean(o_dist[both]) / 28.0) if both.any() else None}
    notes = []
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps,
            "skipped_impls": skipped, "extra": extra, "notes": notes}
