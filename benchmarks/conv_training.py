"""(9) Training the small conv net (Szegedy §3, §4.3): im2col `Conv2D` vs ``nn.Conv`` vs PyTorch.

Model: `spheres.images.models.ConvNet` (5×5 conv → ReLU → 2×2 max-pool → 5×5 stride-2 conv → ReLU
→ dense → ReLU → dense), Adam, softmax cross-entropy. One call = ``steps`` optimiser steps at
batch ``batch`` from the same initial state:

* ``jax-im2col``: the library's epoch (`spheres.images.train.make_epoch_runner`, one jitted ``lax.scan``)
  with the default ``conv_impl="im2col"``;
* ``jax-nn.conv``: the same epoch with ``conv_impl="xla"`` (``nn.Conv`` / ``nn.max_pool``): the
  formulation the im2col rewrite replaced, because XLA:CPU's convolution gradients are slow
  inside a loop body;
* ``torch-eager``: the same network in PyTorch (``Conv2d``, ``MaxPool2d``, the asymmetric "SAME"
  pad of the stride-2 conv by ``F.pad``), same initial weights, ``torch.optim.Adam``, a Python loop.

Work per call: ``steps·batch`` examples at ≈ 3 forward passes each (forward, input and weight
gradients), ``2·Σ MAC`` FLOPs per forward. Equal work: same parameter count, batch, steps and
learning rate; the three give the same logits at the initial weights; and the mean training loss
of the call agrees within 2 % (the batch order differs between the library's shuffled epoch and
the PyTorch loop; the labels are random, so every loss stays near log 10).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from spheres.images import models as im, train as itrain
from theory import same_padding

from . import _harness as H

NAME = "conv_train"
TITLE = "(9) Conv net training: im2col vs nn.Conv vs PyTorch eager"
GOAL = "none (diagnostic: the im2col rewrite against the formulation it replaced, and PyTorch)"
SIZES = {
    "tiny": dict(channels=(4, 8), hidden=16, batch=8, steps=2, repeats=2, probe=256),
    "full": dict(channels=(16, 32), hidden=100, batch=100, steps=50, repeats=3, probe=2048),
}


def forward_macs(channels, hidden) -> int:
    """Multiply-accumulates of one forward pass on a 28×28×1 image."""
    c0, c1 = channels
    return 28 * 28 * c0 * 25 + 7 * 7 * c1 * 25 * c0 + 7 * 7 * c1 * hidden + hidden * 10


def torch_convnet(torch, variables):
    """PyTorch copy of `ConvNet` with the JAX weights (HWIO kernels -> OIHW; NHWC flatten order)."""
    nn, F = torch.nn, torch.nn.functional
    p = jax.tree.map(lambda a: torch.from_numpy(np.array(a, np.float32)), variables["params"])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            c0, c1 = p["conv_0"]["kernel"].shape[-1], p["conv_1"]["kernel"].shape[-1]
            self.conv_0 = nn.Conv2d(1, c0, 5, padding=2)
            self.conv_1 = nn.Conv2d(c0, c1, 5, stride=2)
            self.dense_0 = nn.Linear(*p["dense_0"]["kernel"].shape)
            self.dense_1 = nn.Linear(*p["dense_1"]["kernel"].shape)
            with torch.no_grad():
                for name in ("conv_0", "conv_1"):
                    getattr(self, name).weight.copy_(p[name]["kernel"].permute(3, 2, 0, 1))
                    getattr(self, name).bias.copy_(p[name]["bias"])
                for name in ("dense_0", "dense_1"):
                    getattr(self, name).weight.copy_(p[name]["kernel"].T)
                    getattr(self, name).bias.copy_(p[name]["bias"])

        def forward(self, x):                      # x (B, 28, 28)
            h = F.relu(self.conv_0(x[:, None]))
            h = F.max_pool2d(h, 2)
            lo, hi = same_padding(h.shape[-1], 5, 2)             # XLA "SAME" (14 -> 7: 1, 2)
            h = F.relu(self.conv_1(F.pad(h, (lo, hi, lo, hi))))
            h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # NHWC order, as the JAX dense_0
            return self.dense_1(F.relu(self.dense_0(h)))

    return Net()


def run(ctx: H.Context) -> dict:
    cfg = SIZES[ctx.size]
    B, S = cfg["batch"], cfg["steps"]
    rng = np.random.default_rng(0)
    x_np = rng.random((B * S, 28, 28), dtype=np.float32)
    y_np = rng.integers(0, 10, B * S).astype(np.int32)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    settings = itrain.TrainSettings(epochs=1, batch=B, lr=1e-3)
    runner = itrain.make_epoch_runner(settings)
    flops = 3 * 2 * forward_macs(cfg["channels"], cfg["hidden"]) * B * S
    models = {impl: im.ConvNet(tuple(cfg["channels"]), cfg["hidden"], conv_impl=impl) for impl in ("im2col", "xla")}
    variables = im.init_variables(models["im2col"], jax.random.key(0))
    work = {"model": f"ConvNet{tuple(cfg['channels'])}-{cfg['hidden']}", "params": im.count_params(variables),
            "batch": B, "steps": S, "lr": 1e-3, "optimizer": "adam"}
    impls, skipped = [], []
    eq = H.EqualWork()
    logits = {}
    for label, impl in (("jax-im2col", "im2col"), ("jax-nn.conv", "xla")):
        state = itrain.create_state(models[impl], settings, variables)
        fn = functools.partial(runner, state, x, y, jax.random.key(1), 0)
        note = "images.train epoch (lax.scan), Conv2D im2col" if impl == "im2col" else "same epoch, nn.Conv / nn.max_pool"
        impls.append(H.Impl(label, "jax", fn, B * S, "examples", flops, work=work, note=note))
        logits[label] = np.asarray(models[impl].apply(variables, x[:B]))
    tnet = None
    if ctx.torch is not None:
        torch = ctx.torch
        tnet = torch_convnet(torch, variables)
        tx, ty = torch.from_numpy(x_np), torch.from_numpy(y_np.astype(np.int64))
        with torch.no_grad():
            logits["torch-eager"] = tnet(tx[:B]).numpy()
        init = {k: v.clone() for k, v in tnet.state_dict().items()}

        def torch_epoch():
            tnet.load_state_dict(init)
            opt = torch.optim.Adam(tnet.parameters(), lr=1e-3)
            losses = []
            for s in range(S):
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(tnet(tx[s * B:(s + 1) * B]), ty[s * B:(s + 1) * B])
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            return torch.stack(losses).mean()

        twork = {**work, "params": int(sum(p.numel() for p in tnet.parameters()))}
        impls.append(H.Impl("torch-eager", "torch", torch_epoch, B * S, "examples", flops, work=twork,
                            note="nn.Conv2d / MaxPool2d, torch.optim.Adam, Python loop"))
    else:
        skipped.append({"name": "torch-eager", "reason": ctx.torch_reason})
    impls += H.matmul_probe(ctx, cfg["probe"])
    records, outputs = H.measure(impls, cfg["repeats"])

    names = [k for k in records if not k.startswith("xla-matmul") and not k.startswith("torch-matmul")]
    eq.same("model size, batch, steps, learning rate, optimizer",
            {k: {f: records[k]["work"][f] for f in ("params", "batch", "steps", "lr", "optimizer")} for k in names})
    ref = logits["jax-im2col"]
    eq.close("logits at the initial weights: max |difference| from jax-im2col",
             {k: float(np.max(np.abs(v - ref))) if k != "jax-im2col" else 0.0 for k, v in logits.items()},
             rtol=0.0, atol=1e-4 * max(1.0, float(np.max(np.abs(ref)))))
    losses = {k: float(np.asarray(outputs[k][1].loss)) for k in ("jax-im2col", "jax-nn.conv") if k in outputs}
    if "torch-eager" in outputs:
        losses["torch-eager"] = float(outputs["torch-eager"])
    eq.close("mean training loss of the call", losses, rtol=0.02)
    comps = [H.compare(records, eq, "jax-im2col", "jax-nn.conv", what="im2col vs nn.Conv (same JAX epoch)"),
             H.compare(records, eq, "jax-im2col", "torch-eager"),
             H.compare(records, eq, "jax-nn.conv", "torch-eager")]
    xla = f"xla-matmul-{cfg['probe']}"
    fracs = [H.flop_fraction(records, "jax-im2col", xla)]
    return {"config": cfg, "implementations": records, "equal_work": eq.as_dict(), "comparisons": comps,
            "flop_fractions": fracs, "skipped_impls": skipped,
            "extra": {"forward_macs_per_example": forward_macs(cfg["channels"], cfg["hidden"]),
                      "mean_training_loss": losses}}
