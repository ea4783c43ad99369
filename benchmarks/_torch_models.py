"""PyTorch twins of the Flax models, built from the same parameters (so both sides compute the same
function, which the benchmarks check on shared inputs before timing anything).

Only imported when torch is importable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def sphere_mlp(variables, momentum: float = 0.99) -> nn.Sequential:
    """`spheres.sphere.models.SphereMLP`: [Linear (no bias) -> BatchNorm1d -> ReLU]* -> Linear(1).

    Flax's BatchNorm ``momentum`` m keeps ``m`` of the old running average; torch's keeps
    ``1 − momentum``, so torch gets ``1 − m``. Epsilon 1e-5 on both sides.
    """
    p, s = variables["params"], variables.get("batch_stats", {})
    layers: list[nn.Module] = []
    i = 0
    while f"Dense_{i}" in p and f"BatchNorm_{i}" in p:
        k = p[f"Dense_{i}"]["kernel"]
        lin = nn.Linear(k.shape[0], k.shape[1], bias=False)
        lin.weight.data = _t(np.asarray(k).T)
        bn = nn.BatchNorm1d(k.shape[1], eps=1e-5, momentum=1.0 - momentum)
        bn.weight.data = _t(p[f"BatchNorm_{i}"]["scale"])
        bn.bias.data = _t(p[f"BatchNorm_{i}"]["bias"])
        bn.running_mean = _t(s[f"BatchNorm_{i}"]["mean"])
        bn.running_var = _t(s[f"BatchNorm_{i}"]["var"])
        layers += [lin, bn, nn.ReLU()]
        i += 1
    k, b = p[f"Dense_{i}"]["kernel"], p[f"Dense_{i}"]["bias"]
    out = nn.Linear(k.shape[0], k.shape[1])
    out.weight.data = _t(np.asarray(k).T)
    out.bias.data = _t(b)
    layers += [out, nn.Flatten(0)]  # (B, 1) -> (B,)
    return nn.Sequential(*layers)


class QuadraticNet(nn.Module):
    """`spheres.sphere.models.QuadraticNet`: ``w · Σ_j (W x)_j² + b``."""

    def __init__(self, variables):
        super().__init__()
        p = variables["params"]
        self.W = nn.Parameter(_t(p["W"]))
        self.w = nn.Parameter(_t(p["w"]))
        self.b = nn.Parameter(_t(p["b"]))

    def forward(self, x):
        h = x @ self.W.T
        return self.w * (h * h).sum(-1) + self.b


def image_mlp(variables, activation: str = "relu") -> nn.Sequential:
    """`spheres.images.models.MLP` / `SoftmaxRegression`: Flatten -> [Linear -> act]* -> Linear."""
    p = variables["params"]
    n = len([k for k in p if k.startswith("dense_")])
    act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[activation]
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(n):
        k, b = p[f"dense_{i}"]["kernel"], p[f"dense_{i}"]["bias"]
        lin = nn.Linear(k.shape[0], k.shape[1])
        lin.weight.data = _t(np.asarray(k).T)
        lin.bias.data = _t(b)
        layers.append(lin)
        if i < n - 1:
            layers.append(act())
    return nn.Sequential(*layers)


def sample_two_spheres(generator: torch.Generator, n: int, d: int, R: float):
    """A balanced two-sphere batch in torch (the work `spheres.sphere.data.online_batch` does in JAX)."""
    y = (torch.arange(n) >= n // 2).to(torch.float32)
    z = torch.randn(n, d, generator=generator)
    r = torch.where(y == 1, torch.tensor(R), torch.tensor(1.0))
    return r[:, None] * z / z.norm(dim=1, keepdim=True), y


def pgd_eager(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float,
              steps: int, norm: str, generator: torch.Generator) -> torch.Tensor:
    """PGD in eager PyTorch, the loop of torchattacks 3.5.1's ``PGD`` (L∞) and ``PGDL2`` (L2):
    uniform random start (L∞: in the box; L2: direction N(0, I), radius ε·U), ``steps`` gradient
    steps of the cross-entropy (sign step for L∞, normalised step for L2), projection onto the ε-ball
    and clipping to [0, 1] after every step; returns the last iterate. Used when torchattacks itself
    is not installed (it requires torchvision, which the CPU torch build here cannot take)."""
    loss_fn = nn.CrossEntropyLoss()
    x = x.clone().detach()
    b = x.shape[0]
    if norm == "linf":
        adv = x + torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:
        delta = torch.randn(x.shape, generator=generator)
        n = delta.view(b, -1).norm(p=2, dim=1).view(b, *([1] * (x.dim() - 1)))
        r = torch.rand((b, *([1] * (x.dim() - 1))), generator=generator)
        adv = x + delta / n * r * eps
    adv = torch.clamp(adv, 0, 1).detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        grad = torch.autograd.grad(loss_fn(model(adv), y), adv)[0]
        with torch.no_grad():
            if norm == "linf":
                adv = adv + alpha * grad.sign()
                adv = x + torch.clamp(adv - x, -eps, eps)
            else:
                g = grad.view(b, -1).norm(p=2, dim=1).view(b, *([1] * (x.dim() - 1))) + 1e-10
                adv = adv + alpha * grad / g
                d = adv - x
                dn = d.view(b, -1).norm(p=2, dim=1).view(b, *([1] * (x.dim() - 1)))
                d = d * torch.clamp(eps / dn, max=1.0)
                adv = x + d
            adv = torch.clamp(adv, 0, 1).detach()
    return adv
