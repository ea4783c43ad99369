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
    """`spheres.models.SphereMLP`: [Linear (no bias) -> BatchNorm1d -> ReLU]* -> Linear(1).

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
    """`spheres.models.QuadraticNet`: ``w · Σ_j (W x)_j² + b``."""

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
    """`spheres.image_models.MLP` / `SoftmaxRegression`: Flatten -> [Linear -> act]* -> Linear."""
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
    """A balanced two-sphere batch in torch (the work `spheres.data.online_batch` does in JAX)."""
    y = (torch.arange(n) >= n // 2).to(torch.float32)
    z = torch.randn(n, d, generator=generator)
    r = torch.where(y == 1, torch.tensor(R), torch.tensor(1.0))
    return r[:, None] * z / z.norm(dim=1, keepdim=True), y
