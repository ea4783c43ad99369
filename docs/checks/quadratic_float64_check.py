"""Is a quadratic net's measured error rate biased by float32? (README, finite-set N = 10⁴.)

Usage: python docs/checks/quadratic_float64_check.py RUN_DIR [N_POINTS]
RUN_DIR is a finished `sphere-quadratic` / `sphere-quadratic-finite` sub-run with `ckpt/STEP/`
(e.g. runs/sphere-quadratic-finite-paper-small-N/N10000). For each sphere it draws N_POINTS fresh
points (float64, key 12345), classifies them with the float32 network and with the same network
in float64, and prints both error counts and the number of points where they disagree; then the
exact α-based rate (`theory.exact_error_rate`) and a plain α-space Monte Carlo of 10⁷ draws
(`theory.mc_error_rate`), both in float64.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

jax.config.update("jax_enable_x64", True)
import theory  # noqa: E402


def main(run: str, n: int, R: float = 1.3) -> None:
    steps = sorted(int(s) for s in os.listdir(f"{run}/ckpt") if s.isdigit())
    if not steps:
        sys.exit(f"no checkpoint under {run}/ckpt")
    p = ocp.StandardCheckpointer().restore(os.path.abspath(f"{run}/ckpt/{steps[-1]}/default"))["params"]
    W, w, b = (np.asarray(p[k]) for k in ("W", "w", "b"))
    alpha = theory.alphas(*(jnp.asarray(a, jnp.float64) for a in (W, w, b)))
    W32, W64 = jnp.asarray(W, jnp.float32), jnp.asarray(W, jnp.float64)
    f32 = jax.jit(lambda x: jnp.float32(w) * jnp.sum((x @ W32.T) ** 2, -1) + jnp.float32(b))
    f64 = jax.jit(lambda x: jnp.float64(w) * jnp.sum((x @ W64.T) ** 2, -1) + jnp.float64(b))
    key, chunk = jax.random.key(12345), 100_000
    print(f"{run} step {steps[-1]}: W {W.shape} {W.dtype}")
    for i, (sphere, r, wrong) in enumerate((("inner", 1.0, lambda z: z > 0), ("outer", R, lambda z: z < 0))):
        e32 = e64 = dis = tot = 0
        for c in range(-(-n // chunk)):
            g = jax.random.normal(jax.random.fold_in(key, 2 * c + i), (min(chunk, n - c * chunk), W.shape[1]))
            x = r * g / jnp.linalg.norm(g, axis=1, keepdims=True)
            a, bb = np.asarray(wrong(f32(x.astype(jnp.float32)))), np.asarray(wrong(f64(x)))
            e32, e64, dis, tot = e32 + a.sum(), e64 + bb.sum(), dis + (a != bb).sum(), tot + a.size
        exact = float(theory.exact_error_rate(alpha, sphere=sphere, R=R))
        mc = theory.mc_error_rate(alpha, sphere=sphere, R=R, n=10_000_000, key=jax.random.key(7 + i))
        print(f"{sphere}: {tot} points: float32 {e32 / tot:.6f}, float64 {e64 / tot:.6f}, disagree {dis}; "
              f"exact {exact:.6f}; alpha-space MC {mc.rate:.6f} [{mc.lower:.6f}, {mc.upper:.6f}]")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], int(float(sys.argv[2])) if len(sys.argv) == 3 else 1_000_000)
