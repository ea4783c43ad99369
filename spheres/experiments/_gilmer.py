"""Gilmer et al. 2018 values that several sphere experiments are compared with, and their rows.

The paper's own numbers, as data (`spheres.paper.PaperValue`), shared by the experiment files that
report the same quantity (the manifold attacks of `sphere-relu` and `sphere-quadratic`, the
measured error rates); each experiment's other values sit in its own file.
"""

from __future__ import annotations

from ..paper import PaperRow, PaperValue
from ..tables import fmt_rate

ERRORS = PaperValue("errors in 10⁷ points per sphere", "none found", "gilmer", "§3", "secondary")
ON_MANIFOLD = PaperValue("mean distance to the nearest on-manifold error", "≈ 0.18", "gilmer", "§3",
                         "unverified")
OFF_MANIFOLD = PaperValue("nearest off-manifold error", "0.0796 at ‖x̂‖ ≈ 1.07 (a mean)", "gilmer", "§3",
                          "unverified")
FACTOR = PaperValue("ratio of on- to off-manifold error distances", "≈ 2× (0.18 vs 0.0796)", "gilmer", "§3",
                    "unverified")
PAIR = PaperValue("distance between two random inner-sphere points", "≈ √2 = 1.414", "gilmer", "§3",
                  "verified")


def error_row(s: dict, value: PaperValue = ERRORS) -> PaperRow:
    """Measured errors per sphere beside the paper's "none found"."""
    er = s["error_rate"]
    return PaperRow(value, f"inner {fmt_rate(er['inner'])}, outer {fmt_rate(er['outer'])}",
                    quantity=f"errors in {er['inner']['n']:,} points per sphere")


def _mean_norm(off: dict) -> str:
    """The paper's off-manifold figure is a mean distance at a (mean) norm: ours the same way first."""
    norm = off.get("norm", {})
    return f" at mean ‖x̂‖ = {norm['mean']:.4f}" if "mean" in norm else ""


def attack_rows(s: dict) -> list[PaperRow]:
    """The manifold attacks' distances beside the paper's (mean, median and quantiles of ours:
    the paper reports means)."""
    a = s.get("attacks")
    if not a:
        return []
    on, off = a["on_manifold_nearest"], a["off_manifold_nearest"]
    n = a.get("n_correct", a["n_points"])
    starts = (f" of {n} correctly classified points ({a['start_errors']} of {a['n_points']} starts "
              f"were already errors)" if a.get("start_errors") else f" of {n} points")

    def dist(r, at=""):
        q = r["distance"]
        return (f"mean {q['mean']:.4f}{at}, median {q['median']:.4f}, 5–95% [{q['q05']:.4f}, {q['q95']:.4f}]; "
                f"found for {r['found']}{starts}")

    return [PaperRow(ON_MANIFOLD, dist(on) if on["found"] else f"no error found{starts}"),
            PaperRow(OFF_MANIFOLD, (dist(off, _mean_norm(off)) + f"; min {off['distance']['min']:.4f} at "
                                    f"‖x̂‖ = {off['norm_at_min']:.4f}") if off["found"] else "none found"),
            *_factor_row(on, off),
            PaperRow(PAIR, f"{a['random_pair_distance']['mean']:.4f}")]


def _factor_row(on: dict, off: dict) -> list[PaperRow]:
    """The ratio of the mean on- and off-manifold distances (over the points each attack solved),
    and, where the records hold them, the same ratio of the brackets' lower ends (exact or certified
    over all points: no attack in it)."""
    if not (on["found"] and off["found"]):
        return [PaperRow(FACTOR, "-", note="needs errors found both on and off the manifold")]
    ours = f"{on['distance']['mean'] / off['distance']['mean']:.2f}× by the attacks"
    lo_on, lo_off = (on.get("bracket") or {}).get("lower_mean"), (off.get("bracket") or {}).get("lower_mean")
    if lo_on and lo_off and on["bracket"]["kind"] != "none":
        ours += f"; {lo_on / lo_off:.2f}× by the {on['bracket']['kind']} lower ends"
    return [PaperRow(FACTOR, ours, note=f"on-manifold errors found for {on['found']} points, off for {off['found']}")]
