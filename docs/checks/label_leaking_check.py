"""Is the adversarially trained maxout's low FGSM error label leaking? (README, adversarial training.)

Usage: python docs/checks/label_leaking_check.py RUN_DIR [N_TEST]
RUN_DIR is a finished `goodfellow-adversarial-training` run (e.g.
runs/goodfellow-adversarial-training-medium). For its plain and J̃-trained maxout nets this prints,
on the first N_TEST test images (default all 10,000), ε = 0.25 and the [0, 1] box:
clean error; FGSM error with the TRUE label (what the experiment and the paper report); FGSM error
with the model's PREDICTED label (no label information in the perturbation: Kurakin, Goodfellow &
Bengio 2017, "label leaking"); and PGD error (L∞, 20 steps of 2.5ε/20, one random start, key 0).
A model whose FGSM error with true labels is BELOW its clean error is reading the label from
the perturbation; the predicted-label FGSM and PGD rows then give its real robustness.
"""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import attacks
from spheres.images import data as idata, models as im, train as itrain
from spheres.results import RunDir


def main(run: str, n: int | None) -> None:
    cfg = json.loads((Path(run) / "config.json").read_text())["config"]
    data = idata.load_dataset(cfg["dataset"], cfg.get("data_dir"))
    x, y = jnp.asarray(data.x_test[:n]), jnp.asarray(data.y_test[:n])
    module = im.paper_model("maxout-240", maxout_units=cfg["maxout_units"],
                            maxout_pieces=cfg["maxout_pieces"]).module
    rd = RunDir(Path(run), "", {})
    eps, chunk = cfg["eps"], 1000
    print(f"{run}: {cfg['dataset']} test[:{len(x)}], eps {eps}, box [0, 1]")
    print(f"{'model':<28} {'clean':>7} {'FGSM y':>7} {'FGSM ŷ':>7} {'PGD-20':>7}")
    for name in ("maxout+plain", "maxout+fgsm adversarial (α=0.5)"):
        v = itrain.load_params(rd, name)
        f = im.logit_fn(module, v)
        batched = jax.jit(jax.vmap(f))
        err = {k: 0 for k in ("clean", "fgsm_y", "fgsm_pred", "pgd")}
        for s in range(0, len(x), chunk):
            xb, yb = x[s:s + chunk], y[s:s + chunk]
            pred = jnp.argmax(batched(xb), -1)
            err["clean"] += int(jnp.sum(pred != yb))
            for key, labels in (("fgsm_y", yb), ("fgsm_pred", pred)):
                xa = attacks.fgsm(f, xb, labels, eps=eps, bounds=(0.0, 1.0)).x_adv
                err[key] += int(jnp.sum(jnp.argmax(batched(xa), -1) != yb))
            r = attacks.pgd(f, xb, yb, eps=eps, num_steps=20, bounds=(0.0, 1.0),
                            key=jax.random.fold_in(jax.random.key(0), s))
            err["pgd"] += int(jnp.sum(jnp.argmax(batched(r.x_adv), -1) != yb))
        print(f"{name:<28} " + " ".join(f"{100 * err[k] / len(x):6.1f}%" for k in err))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
