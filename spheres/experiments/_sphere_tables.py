"""The result tables of sphere training runs: provenance line, attack rows, theory rows, and the
table of one training run (``spheres run sphere-relu`` / ``sphere-quadratic``)."""

from __future__ import annotations

from ..sphere.bracket import format_bracket, format_distance_vs_bound
from ..tables import Tables, fmt_log10, fmt_rate, key_value

def provenance(summary: dict) -> str:
    """One line: preset, seed, devices, wall time (the keys a summary has)."""
    parts = []
    if summary.get("preset"):
        parts.append(f"preset: {summary['preset']}")
    if "seed" in summary:
        parts.append(f"seed {summary['seed']}")
    if "devices" in summary:
        parts.append(f"{summary['devices']} {summary.get('backend', '')} device(s)")
    if "wall_seconds" in summary:
        parts.append(f"{summary['wall_seconds']:.0f} s")
    return " | ".join(parts)


def _distance_stats(q: dict) -> str:
    """Mean first (the statistic Gilmer et al. report), then median and the 5–95 % quantiles."""
    return f"mean {q['mean']:.4f}, median {q['median']:.4f}, 5–95% [{q['q05']:.4f}, {q['q95']:.4f}]"


def attack_rows(a: dict) -> list[tuple[str, str]]:
    """Rows for `spheres.sphere.manifold.manifold_analysis` results (distances: `_distance_stats`)."""
    on, off = a["on_manifold_nearest"], a["off_manifold_nearest"]
    n = a.get("n_correct", a["n_points"])
    rows = []
    if a.get("start_errors"):
        rows.append(("attack starting points", f"{a['n_points']}, of which {a['start_errors']} already "
                     f"misclassified (left out below)"))
    rows.append(("on-manifold nearest error", f"found for {on['found']}/{n}"
                 + (f"; distance {_distance_stats(on['distance'])}" if on["found"] else "")))
    if on.get("bracket"):
        rows.append(("on-manifold d(E) bracket", format_bracket(on["bracket"])))
    rows.append(("worst-case manifold attack", f"success {a['worst_case']['success']}/{n}"))
    rows.append(("off-manifold nearest error", f"found for {off['found']}/{n}"
                 + (f"; distance {_distance_stats(off['distance'])}"
                    + (f", mean norm {off['norm']['mean']:.4f}" if "mean" in off.get("norm", {}) else "")
                    + f", min {off['distance']['min']:.4f} at norm {off['norm_at_min']:.4f}"
                    if off["found"] else "")))
    if off.get("bracket"):
        rows.append(("off-manifold distance bracket", format_bracket(off["bracket"])))
    rows.append(("random inner-pair distance", f"{a['random_pair_distance']['mean']:.4f} (sqrt 2 = 1.4142)"))
    return rows


def theory_rows(summary: dict) -> list[tuple[str, str]]:
    """Rows for a quadratic net's ``theory`` block (α spectrum, exact and CLT rates)."""
    th = summary.get("theory")
    if not th or not th.get("alpha_valid", True):
        return []
    return [("alpha in [1/R^2, 1]", f"{th['alpha_fraction_in_range']:.1%} ({th['alpha_below']} below, "
                                    f"{th['alpha_above']} above of {summary['d']}); perfect: {th['perfect']}"),
            ("first perfect step", str(summary.get("first_perfect_step")))] + [
        (f"theory, {s} sphere", f"exact {fmt_log10(th[f'log10_exact_{s}'])}, CLT {fmt_log10(th[f'log10_clt_{s}'])}")
        for s in ("inner", "outer")]


def training_table(summary: dict) -> Tables:
    """The table of one sphere training run (``spheres run sphere-relu`` / ``sphere-quadratic``)."""
    er = summary["error_rate"]
    rows = [("model", f"{summary['model']}  (d={summary['d']}, R={summary['R']}, "
                      f"{summary['params']:,} params)"),
            ("training", f"{summary['steps']:,} steps × batch {summary['batch']}"
                         + (f" on N={summary['train_size']:,}" if summary["train_size"] else " online")),
            ("final training loss", f"{summary['final_train_loss']:.4g}"
             if summary["final_train_loss"] is not None else "-")]
    for sphere in ("inner", "outer"):
        rows.append((f"error rate, {sphere} sphere", fmt_rate(er[sphere]) + " (exact interval)"))
    for k, label in (("train_seconds", "train time (s)"), ("eval_seconds", "eval time (s)"),
                     ("wall_seconds", "wall time (s)")):
        rows.append((label, f"{summary[k]:.1f}"))
    if summary.get("steps_per_second"):
        timed = summary.get("steps_timed", summary["steps"])
        rows.append(("training speed", f"{summary['steps_per_second']:.0f} steps/s"
                     + (f" (time recorded for the last {timed:,} of {summary['steps']:,} steps)"
                        if timed < summary["steps"] else "")))
    if summary.get("attacks"):
        rows += attack_rows(summary["attacks"])
    rows += theory_rows(summary)
    if summary.get("distance_vs_bound"):
        rows += [(f"d(E), {s} sphere", format_distance_vs_bound(summary["distance_vs_bound"], s))
                 for s in ("inner", "outer")]
    return Tables(summary["experiment"], provenance(summary), (key_value(rows),))
