"""Adversarial examples, transfer and robustness of image models, on top of `attacks` and `theory`.

Images are ``(n, 28, 28)`` float32 in [0, 1]; the attacks take them flattened to ``(n, 784)``
(`flat`) with the model's per-example logit function (`models.apply_fn`). What is here:

* `lbfgs_examples`: Szegedy et al.'s targeted box-constrained L-BFGS examples with random targets
  (`choose_targets`) and their distortion ``sqrt(Σ (x' − x)² / 784)``; `example_stats` summarises them.
* `fgsm_examples` / `fgsm_evaluation`: Goodfellow et al.'s FGSM, optionally clipped to [0, 1];
  `label_free_robustness`: FGSM from the model's own prediction and PGD, errors that a model
  cannot avoid by reading the label off the perturbation.
* `gaussian_noise`, `scale_perturbation`: the noise and rescaled-perturbation controls.
* `transfer_matrix`: the error of every model on every set of examples.
* `layer_bounds` / `jacobian_norms`: per-layer upper Lipschitz bounds (``theory``) of a trained
  model and the measured local constants at test points (lower bounds).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import attacks
import theory

from . import models as im
from .evaluate import Evaluation, evaluate
from .weights import decayed_kernels

PGD_STEPS = 20


def flat(x: np.ndarray) -> jax.Array:
    """Images ``(n, 28, 28)`` as the ``(n, 784)`` float32 inputs the attacks take."""
    return jnp.asarray(np.asarray(x, np.float32).reshape(x.shape[0], -1))


# ------------------------------------------------------------------------------ L-BFGS examples


def choose_targets(key: jax.Array, y: np.ndarray, pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """A random target label per example, different from the true label and the model's prediction."""
    n = y.shape[0]
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_classes))(jax.random.split(key, n))
    perms = np.asarray(perms)
    ok = (perms != y[:, None]) & (perms != pred[:, None])
    return perms[np.arange(n), np.argmax(ok, axis=1)].astype(np.int32)


def lbfgs_examples(recipe: im.ModelRecipe, variables, x: np.ndarray, y: np.ndarray, *, key: jax.Array,
                   c_rounds: int, maxiter: int, chunk: int) -> dict[str, np.ndarray]:
    """Szegedy's targeted box-constrained L-BFGS examples for ``x (n, 28, 28)``.

    Targets are random labels ≠ the true label and ≠ the model's prediction. Runs
    ``attacks.lbfgs`` on flattened inputs in fixed-size chunks (one compilation per architecture).
    Returns ``x, y, target, x_adv, success, distortion`` (``sqrt(Σ(x'−x)²/784)``) and ``num_steps``.
    """
    n = x.shape[0]
    pred = evaluate(recipe.module, variables, x, y).predictions
    target = choose_targets(key, np.asarray(y), pred)
    xf = np.asarray(x, np.float32).reshape(n, -1)
    f = im.apply_fn(recipe.module)
    b = min(chunk, n)
    outs = []
    for s in range(0, n, b):
        xc, tc = xf[s:s + b], target[s:s + b]
        k = xc.shape[0]
        if k < b:
            xc = np.concatenate([xc, np.repeat(xc[-1:], b - k, 0)])
            tc = np.concatenate([tc, np.repeat(tc[-1:], b - k, 0)])
        res = attacks.lbfgs(f, xc, tc, params=variables, bounds=(0.0, 1.0), c_rounds=c_rounds,
                            maxiter=maxiter)
        outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:k], res))
    cat = lambda field: np.concatenate([getattr(o, field) for o in outs])  # noqa: E731
    x_adv = cat("x_adv").reshape(x.shape)
    return {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.int32), "target": target,
            "x_adv": x_adv.astype(np.float32), "success": cat("success").astype(bool),
            "distortion": (cat("distance") / math.sqrt(xf.shape[1])).astype(np.float32),
            "num_steps": cat("num_steps")}


def example_stats(ex: dict) -> dict:
    """Success rate, mean and median distortion of the successful examples (NaN if none), mean
    L-BFGS iterations, and whether every example lies in the pixel box, of `lbfgs_examples`' output."""
    s = ex["success"]
    return {"n_attacked": int(s.size), "attack_success_rate": float(s.mean()),
            "mean_distortion": float(ex["distortion"][s].mean()) if s.any() else float("nan"),
            "median_distortion": float(np.median(ex["distortion"][s])) if s.any() else float("nan"),
            "mean_lbfgs_iterations": float(ex["num_steps"].mean()),
            "targets_reached_in_box": bool(np.all(ex["x_adv"] >= 0.0) and np.all(ex["x_adv"] <= 1.0))}


# ------------------------------------------------------------------------------ controls


def gaussian_noise(key: jax.Array, x: np.ndarray, sigma: float) -> np.ndarray:
    """``clip(x + σ·N(0, I), 0, 1)``: Szegedy's noise controls."""
    noise = np.asarray(jax.random.normal(key, x.shape, jnp.float32))
    return np.clip(x + sigma * noise, 0.0, 1.0).astype(np.float32)


def scale_perturbation(x: np.ndarray, x_adv: np.ndarray, stddev: float) -> np.ndarray:
    """``clip(x + r · stddev / sqrt(mean r²), 0, 1)`` per example, ``r = x_adv − x`` (r = 0 stays 0)."""
    r = (x_adv - x).reshape(x.shape[0], -1)
    rms = np.sqrt(np.mean(r * r, axis=1, keepdims=True))
    scale = np.where(rms > 0, stddev / np.where(rms > 0, rms, 1.0), 0.0)
    return np.clip(x + (r * scale).reshape(x.shape), 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------ FGSM and PGD


def fgsm_examples(recipe: im.ModelRecipe, variables, x: np.ndarray, y: np.ndarray, eps, *, clip: bool):
    """``attacks.fgsm`` on flattened images; returns ``(x_adv (n, 28, 28), AttackResult)``."""
    res = attacks.fgsm(im.apply_fn(recipe.module), flat(x), jnp.asarray(y, jnp.int32), eps=eps,
                       bounds=(0.0, 1.0) if clip else None, params=variables)
    return np.asarray(res.x_adv).reshape(x.shape), res


def fgsm_evaluation(recipe: im.ModelRecipe, variables, x, y, eps, *, clip: bool) -> tuple[Evaluation, np.ndarray]:
    """The model's `Evaluation` on its own FGSM examples at ``eps``, and the examples."""
    x_adv, _ = fgsm_examples(recipe, variables, x, y, eps, clip=clip)
    return evaluate(recipe.module, variables, x_adv, y), x_adv


def label_free_robustness(recipe: im.ModelRecipe, variables, x, y, predictions, eps, *, clip: bool,
                          key: jax.Array) -> dict:
    """Errors that an FGSM-trained model cannot pass by reading the label off the perturbation.

    FGSM with the true label encodes y in ``sign(∇ₓJ(x, y))``; a model trained on such examples can
    learn to decode it and err LESS on them than on clean images ("label leaking", Kurakin,
    Goodfellow & Bengio 2017). Returned: ``fgsm_predicted_label_error`` (FGSM toward leaving the
    model's own prediction ŷ = ``predictions``, the clean evaluation's, no label information) and
    ``pgd_error`` (L∞ PGD, `PGD_STEPS` steps of 2.5ε/`PGD_STEPS`, one random start from ``key``),
    both judged against the true y.
    """
    x_pred, _ = fgsm_examples(recipe, variables, x, predictions, eps, clip=clip)
    x_pgd = attacks.pgd(im.apply_fn(recipe.module), flat(x), jnp.asarray(y, jnp.int32), eps=eps,
                        num_steps=PGD_STEPS, bounds=(0.0, 1.0) if clip else None, key=key,
                        params=variables).x_adv
    ev = lambda xa: evaluate(recipe.module, variables, np.asarray(xa).reshape(x.shape), y).error  # noqa: E731
    return {"fgsm_predicted_label_error": ev(x_pred), "pgd_error": ev(x_pgd), "pgd_steps": PGD_STEPS}


# ------------------------------------------------------------------------------ transfer


def transfer_matrix(models: dict, x_rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """``{row: {model: error rate, "_count": n}}`` for ``models = {name: {"recipe", "variables"}}``.

    Each row is ``(x, y, mask)``; the rate counts ``pred ≠ y`` over the examples where ``mask``
    holds (e.g. the source attack succeeded), and ``_count`` is how many those are."""
    fns = {n: im.apply_fn(m["recipe"].module) for n, m in models.items()}
    params = {n: m["variables"] for n, m in models.items()}
    out = {}
    for row, (x, y, mask) in x_rows.items():
        xf = jnp.asarray(x.reshape(x.shape[0], -1))
        res = attacks.transfer_error_rates(xf, jnp.asarray(y), fns, params=params, mask=jnp.asarray(mask),
                                           batch_size=min(500, x.shape[0]))
        out[row] = {n: float(v) for n, v in res.error_rate.items()}
        out[row]["_count"] = int(np.sum(mask))
    return out


# ------------------------------------------------------------------------------ Lipschitz bounds


def activation_after(recipe: im.ModelRecipe, layer: str) -> tuple[str, float]:
    """The nonlinearity after ``layer`` of the recipe's model and its Lipschitz constant."""
    mod = recipe.module
    if isinstance(mod, im.MLP):
        last = f"dense_{len(mod.features)}"
        if layer == last:
            return ("none (logits)", 1.0)
        return (mod.activation, 0.25 if mod.activation == "sigmoid" else 1.0)
    if isinstance(mod, im.AutoencoderClassifier):
        return ("sigmoid", 0.25) if layer == "encoder" else ("none (logits)", 1.0)
    if isinstance(mod, im.ConvNet):
        return {"conv_0": ("relu + 2x2 max-pool", 1.0), "conv_1": ("relu", 1.0),
                "dense_0": ("relu", 1.0)}.get(layer, ("none (logits)", 1.0))
    if isinstance(mod, im.Maxout):
        return ("max over pieces", 1.0) if layer.startswith("maxout") else ("none (logits)", 1.0)
    return ("none (logits)", 1.0)


def layer_bounds(recipe: im.ModelRecipe, variables) -> list[dict]:
    """Per-layer upper bounds on the classification path, in forward order: ``{"layer", "kind",
    "shape", "bound", "activation", "activation_lipschitz"}`` (Szegedy §4.3: a dense layer's
    largest singular value, a convolution's from the 2-D DFT of its kernel; theory.* in float64)."""
    specs = recipe.module.conv_specs() if isinstance(recipe.module, im.ConvNet) else {}
    out = []
    with jax.enable_x64(True):
        for path, w in decayed_kernels(variables["params"]):
            w64 = jnp.asarray(np.asarray(w, np.float64))
            base = path.split("/")[-1]
            if w.ndim == 4:
                shape_in, stride, padding = specs[base]
                bound = float(theory.conv_lipschitz(w64, stride=stride, input_shape=shape_in, padding=padding))
                kind = f"conv {w.shape[0]}x{w.shape[1]} s{stride} {padding}"
            else:
                bound = float(theory.dense_lipschitz(w64))
                kind = "dense" if not base.startswith("maxout") else "maxout (stacked pieces)"
            act, lip = activation_after(recipe, base)
            out.append({"layer": path, "kind": kind, "shape": list(w.shape), "bound": bound,
                        "activation": act, "activation_lipschitz": lip})
    return out


def jacobian_norms(recipe: im.ModelRecipe, variables, x: np.ndarray, *, key: jax.Array, iters: int) -> np.ndarray:
    """``‖∂logits/∂x‖₂`` at each ``x`` by power iteration on JᵀJ (jvp/vjp): local Lipschitz constants,
    each a lower bound on the global one."""
    f = im.apply_fn(recipe.module)

    @jax.jit
    def one(variables, x0, k):
        g = lambda xx: f(variables, xx)  # noqa: E731
        v = jax.random.normal(k, x0.shape)

        def body(_, v):
            v = v / jnp.linalg.norm(v)
            _, jv = jax.jvp(g, (x0,), (v,))
            _, vjp = jax.vjp(g, x0)
            return vjp(jv)[0]
        v = jax.lax.fori_loop(0, iters, body, v)
        v = v / jnp.linalg.norm(v)
        return jnp.linalg.norm(jax.jvp(g, (x0,), (v,))[1])

    batched = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    xf = jnp.asarray(x.reshape(x.shape[0], -1))
    return np.asarray(batched(variables, xf, jax.random.split(key, x.shape[0])))
