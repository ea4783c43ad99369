"""On paper: the expected time of each sphere experiment's ``paper`` preset on one modern GPU.

No timing: the FLOP count of every model a preset trains, evaluates and attacks (dense layers only,
as in the other benchmarks), divided by an assumed sustained GPU rate, plus a per-step latency
floor (batch-50 training and batched attack steps are latency-bound on a GPU, not FLOP-bound).

Assumptions (stated in the output): one NVIDIA A100-class GPU, float32 peak 19.5 TFLOP/s of which
40 % is sustained on these small matmuls (7.8 TFLOP/s), 100 µs per training step inside a
``lax.scan`` and 50 µs per attack step (a handful of fused kernels each). These are estimates for
planning, not measurements. Experiments whose config this module does not understand are listed
as not estimated.
"""

from __future__ import annotations

import re

from . import _harness as H

NAME = "paper_estimates"
TITLE = "Paper presets: estimated time on one GPU"
GOAL = "estimate only (FLOP count / assumed GPU rate)"
SIZES = {"tiny": {}, "full": {}}
GPU = {"name": "A100-class", "fp32_peak_tflops": 19.5, "sustained_fraction": 0.40,
       "train_step_latency_s": 100e-6, "attack_step_latency_s": 50e-6}


def _model_flops(kind: str, d: int, widths, hidden: int):
    """(forward FLOPs per example, input-gradient FLOPs per example, train FLOPs per example)."""
    if kind == "quadratic":
        s = d * hidden
        return 2 * s, 4 * s, 4 * s
    s = H.dense_flops([d, *widths, 1])
    return 2 * s, 4 * s, 6 * s - 2 * d * widths[0]


def _parse_spec(spec: str, cfg):
    m = re.fullmatch(r"quad\.w(\d+)", spec)
    if m:
        return "quadratic", cfg.d, (), int(m.group(1))
    m = re.fullmatch(r"relu\.w(\d+)\.(\d+)", spec)
    if m:
        return "relu", cfg.d, (int(m.group(1)),) * int(m.group(2)), cfg.hidden
    raise ValueError(spec)


def estimate(cfg) -> dict:
    kind = "quadratic" if getattr(cfg, "model", "relu") == "quadratic" else "relu"
    models = []
    if hasattr(cfg, "dims"):
        models = [(kind, d, tuple(cfg.widths), cfg.hidden) for d in cfg.dims]
    elif hasattr(cfg, "models") and hasattr(cfg, "train_sizes"):
        models = [_parse_spec(s, cfg) for s in cfg.models for _ in cfg.train_sizes]
    elif hasattr(cfg, "train_sizes"):
        models = [(kind, cfg.d, tuple(cfg.widths), cfg.hidden) for _ in cfg.train_sizes]
    else:
        models = [(kind, cfg.d, tuple(cfg.widths), cfg.hidden)]
    flops, train_steps, attack_steps = 0.0, 0, 0
    for k, d, widths, hidden in models:
        fwd, grad, train = _model_flops(k, d, widths, hidden)
        flops += cfg.steps * cfg.batch * train
        train_steps += cfg.steps
        flops += 2 * getattr(cfg, "eval_samples", 0) * fwd
        if getattr(cfg, "track_eval_every", 0):
            flops += (cfg.steps // cfg.track_eval_every) * 2 * cfg.track_eval_samples * fwd
        a = getattr(cfg, "attack_steps", 0) + getattr(cfg, "worst_case_steps", 0)
        if getattr(cfg, "attack_samples", 0):
            flops += cfg.attack_samples * a * grad
            attack_steps += a
        if getattr(cfg, "measure_every", 0):
            times = cfg.steps // cfg.measure_every
            flops += times * (cfg.measure_eval * fwd + cfg.measure_attack * cfg.attack_steps * grad)
            attack_steps += times * cfg.attack_steps
    rate = GPU["fp32_peak_tflops"] * 1e12 * GPU["sustained_fraction"]
    seconds = flops / rate + train_steps * GPU["train_step_latency_s"] + attack_steps * GPU["attack_step_latency_s"]
    return {"models": len(models), "tflop": flops / 1e12, "train_steps": train_steps,
            "gpu_hours": seconds / 3600, "flop_bound_hours": flops / rate / 3600}


def run(ctx: H.Context) -> dict:
    from spheres import experiments as E

    rows, notes = [], []
    for name in E.names():
        exp = E.get(name)
        if "paper" not in getattr(exp.config_cls, "PRESETS", {}):
            notes.append(f"{name}: no `paper` preset, not estimated")
            continue
        cfg = E.make_config(name, "paper")
        if not all(hasattr(cfg, f) for f in ("d", "batch", "steps", "widths", "hidden")):
            notes.append(f"{name}: not a sphere-training config, not estimated")
            continue
        est = estimate(cfg)
        est.update(experiment=name, command=f"spheres run {name} --preset paper --out runs/{name}-paper",
                   stated_cost=getattr(exp.config_cls, "COST", {}).get("paper", ""))
        rows.append(est)
    return {"config": {"gpu": GPU}, "implementations": {}, "equal_work": {"passed": True, "checks": []},
            "comparisons": [], "estimates": rows, "notes": notes}
