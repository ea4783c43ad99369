"""One result-table format for every experiment, printed as text or rendered as Markdown.

An experiment's ``table(summary)`` returns a `Tables`: a title, one provenance line (dataset,
preset, seed, time, devices), one or more `Table` blocks (a header and rows of strings, with an
optional caption) and notes. ``spheres run`` / ``spheres show`` print ``.text()``; ``spheres
report`` and the generated results pages use ``.markdown()``. The number formats used across
experiments live here too, so the same quantity reads the same way everywhere: a rate measured
over ``n`` examples is shown with its exact 95 % interval (`pct_ci`), a mean or a bound as a
plain number (`pct`, `num`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

from theory.binomial import clopper_pearson


@dataclasses.dataclass(frozen=True)
class Table:
    """A header and rows of cells (strings); ``caption`` is printed above the block."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    align: str = ""      # one of l / r per column; default: first column left, the others right

    def __post_init__(self):
        object.__setattr__(self, "header", tuple(map(str, self.header)))
        object.__setattr__(self, "rows", tuple(tuple(map(str, r)) for r in self.rows))
        for r in self.rows:
            if len(r) != len(self.header):
                raise ValueError(f"row {r} has {len(r)} cells for a header of {len(self.header)}")

    def text(self) -> str:
        widths = [max(len(r[i]) for r in (self.header, *self.rows)) for i in range(len(self.header))]
        line = "  ".join("-" * w for w in widths)

        align = self.align or "l" + "r" * (len(self.header) - 1)

        def fmt(r):
            return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                             for c, w, a in zip(r, widths, align)).rstrip()

        out = [self.caption] if self.caption else []
        return "\n".join(out + [line, fmt(self.header), line] + [fmt(r) for r in self.rows] + [line])

    def markdown(self) -> str:
        esc = lambda c: c.replace("|", "\\|")  # noqa: E731
        out = [f"*{self.caption}*", ""] if self.caption else []
        out.append("| " + " | ".join(map(esc, self.header)) + " |")
        out.append("|" + "---|" * len(self.header))
        out += ["| " + " | ".join(map(esc, r)) + " |" for r in self.rows]
        return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class Tables:
    """What an experiment reports: ``title``, a ``provenance`` line, tables and notes."""

    title: str
    provenance: str
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        parts = [self.title, self.provenance] if self.provenance else [self.title]
        parts += [t.text() for t in self.tables]
        parts += [f"  {n}" for n in self.notes]
        return "\n".join(parts)

    def markdown(self) -> str:
        parts = [f"**{self.title}**" + (f"  \n{self.provenance}" if self.provenance else "")]
        parts += [t.markdown() for t in self.tables]
        if self.notes:
            parts.append("\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(parts)


def key_value(rows: Iterable[tuple[str, str]], caption: str = "") -> Table:
    """A two-column ``quantity | value`` table."""
    return Table(("quantity", "value"), tuple(rows), caption, align="ll")


# ------------------------------------------------------------------------------------ formats


def pct(v) -> str:
    """``0.1234`` -> ``12.3%``; ``-`` for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%"


def rate_ci(rate, n, confidence: float = 0.95) -> tuple[int, float, float]:
    """``(k, lower, upper)`` of a rate measured over ``n`` examples: the count ``k = rate·n`` and its
    exact (Clopper–Pearson) interval, `theory.binomial.clopper_pearson`.

    Raises ValueError unless ``n`` is an integer ≥ 1 and ``rate·n`` is an integer ``k`` in [0, n]
    to within ``1e-6 + 2.4e-7·rate·n`` (four float32 ulps: a rate computed in float32, ``k/n``
    rounded to 24 bits, recovers its count; ``0.161`` over 1,000 is stored as 0.16099999845): a
    rate that is not a count over ``n`` means the wrong ``n`` was passed."""
    try:
        ok = not isinstance(n, (bool, str)) and float(n) == int(n) and int(n) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    n = int(n)
    r = float(rate)
    if not math.isfinite(r) or not 0.0 <= r <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    k = round(r * n)
    if abs(r * n - k) > 1e-6 + 2.4e-7 * r * n:
        raise ValueError(f"rate {rate!r} is not a count over n = {n} (rate·n = {r * n!r}): wrong n?")
    return (k, *clopper_pearson(k, n, confidence))


def _pct_bound(x: float, up: bool) -> str:
    """``x`` in percent, rounded outward (up for an upper bound, down for a lower one) so the shown
    interval contains the exact one: one decimal, or two significant digits of the distance to 0 %
    or 100 % when it is under 1 point (trailing zeros after the first decimal dropped)."""
    p = 100.0 * x
    near = min(p, 100.0 - p)
    digits = 1 if near >= 1.0 or near <= 0.0 else max(1, 1 - math.floor(math.log10(near)))
    scale = 10.0 ** digits
    v = (math.ceil(p * scale - 1e-9) if up else math.floor(p * scale + 1e-9)) / scale
    out = f"{min(max(v, 0.0), 100.0):.{digits}f}"
    return out[:-1] if digits > 1 and out.endswith("0") else out


def pct_ci(rate, n, confidence: float = 0.95) -> str:
    """A rate over ``n`` examples with its exact interval (`rate_ci`), compactly: 123 of 1,000 is
    ``12.3% [10.3, 14.5]`` (bounds in percent, rounded outward); a zero count shows its upper bound,
    ``0.0% (≤ 0.37%)``, and a full one its lower bound, ``100.0% (≥ 99.63%)``. The rate gets more
    decimals when one would show a count that is neither zero nor full as 0.0% or 100.0%. ``-`` for
    a rate that is None or NaN (a rate over no examples). Raises ValueError as `rate_ci` does."""
    if rate is None or math.isnan(float(rate)):
        return "-"
    k, lower, upper = rate_ci(rate, n, confidence)
    n = int(n)
    if k == 0:
        return f"0.0% (≤ {_pct_bound(upper, True)}%)"
    if k == n:
        return f"100.0% (≥ {_pct_bound(lower, False)}%)"
    p, digits = 100.0 * k / n, 1
    while f"{p:.{digits}f}" in (f"{0:.{digits}f}", f"{100:.{digits}f}") and digits < 8:
        digits += 1
    return f"{p:.{digits}f}% [{_pct_bound(lower, False)}, {_pct_bound(upper, True)}]"


def _tenths_outward(lo: float, hi: float) -> tuple[float, float]:
    """An interval rounded outward to 0.1; an end within 1e-10 of a tenth stays there."""
    return math.floor(10 * lo + 1e-9) / 10, math.ceil(10 * hi - 1e-9) / 10


def _points_outward(lo: float, hi: float) -> tuple[float, float]:
    """An interval of rates in percentage points, rounded outward to 0.1 point."""
    return _tenths_outward(100 * lo, 100 * hi)


def rate_difference(rate1, n1, rate2, n2, *, seeds: int = 1, confidence: float = 0.95) -> str:
    """``rate1 − rate2`` in points with its interval (`theory.binomial.difference_interval`, on the
    counts `rate_ci` recovers; ends rounded outward to 0.1 point) and what it allows one to say,
    e.g. ``-0.8 points [-1.7, +0.1], not told apart at 95% (one seed): inconclusive``. The interval
    covers the test draw only: with one seed it says nothing of training-to-training variation,
    and the text says so. Two models scored on the same images would have a tighter (paired)
    interval, so this one is conservative there."""
    from theory.binomial import difference_interval

    k1, _, _ = rate_ci(rate1, n1, confidence)
    k2, _, _ = rate_ci(rate2, n2, confidence)
    d, lo, hi = difference_interval(k1, int(n1), k2, int(n2), confidence)
    runs = "one seed" if seeds == 1 else f"{seeds} seeds"
    verdict = (f"not told apart at {confidence:.0%} ({runs}): inconclusive" if lo <= 0.0 <= hi else
               f"{'lower' if hi < 0 else 'higher'} at {confidence:.0%} over the test draw ({runs}"
               + ("; training-to-training spread not measured)" if seeds == 1 else ")"))
    lo_pt, hi_pt = _points_outward(lo, hi)
    return f"{100 * d:+.1f} points [{lo_pt:+.1f}, {hi_pt:+.1f}], {verdict}"


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lower, upper)`` of one quantity measured once per seed: Student's t interval over the
    seeds (SciPy's ``ttest_1samp(...).confidence_interval``), ``mean ± t_{k−1} · s / √k``. It
    measures training-to-training spread on a fixed evaluation set, not the draw of that set.
    Raises ValueError for fewer than two finite values."""
    from scipy import stats

    v = [float(x) for x in values]
    if len(v) < 2 or not all(math.isfinite(x) for x in v):
        raise ValueError(f"need at least two finite values, one per seed (got {values!r})")
    if max(v) == min(v):
        return v[0], v[0], v[0]
    ci = stats.ttest_1samp(v, 0.0).confidence_interval(confidence)
    return sum(v) / len(v), float(ci.low), float(ci.high)


def over_seeds(values, seeds, confidence: float = 0.95) -> str:
    """Rates measured once per seed as ``mean m% [lower, upper] over k seeds (seed 0: a%, ...)`` with
    `mean_interval`'s t interval in percent, rounded outward to 0.1 point and cut to [0, 100] %
    (the t interval is symmetric and knows nothing of a rate's range)."""
    m, lo, hi = mean_interval(values, confidence)
    lo, hi = max(lo, 0.0), min(hi, 1.0)
    each = ", ".join(f"seed {s}: {100 * float(x):.1f}%" for s, x in zip(seeds, values))
    lo_pt, hi_pt = _points_outward(lo, hi)
    return (f"mean {100 * m:.1f}% [{lo_pt:.1f}, {hi_pt:.1f}]"
            f" over {len(values)} seeds ({each})")


def count_over_seeds(counts, seeds, total: int, confidence: float = 0.95) -> str:
    """Counts measured once per seed (e.g. α outside a band, of ``total``) as
    ``mean m of total [lower, upper] over k seeds (seed 0: a, ...)`` with `mean_interval`'s t interval
    rounded outward to 0.1 and cut to [0, total]."""
    m, lo, hi = mean_interval(counts, confidence)
    lo, hi = _tenths_outward(lo, hi)
    lo, hi = max(lo, 0.0), min(hi, float(total))
    each = ", ".join(f"seed {s}: {int(c)}" for s, c in zip(seeds, counts))
    return f"mean {m:.1f} of {total} [{lo:.1f}, {hi:.1f}] over {len(counts)} seeds ({each})"


def pooled_rate(measured, confidence: float = 0.95) -> dict:
    """Measured rates ``{"errors", "n", ...}`` of several models on disjoint samples pooled into one
    (`fmt_rate`'s form): the errors and points summed, with the exact (Clopper–Pearson) interval of
    the sum. For models whose rates differ the pooled count is less spread than a binomial, so the
    interval is conservative for their mean rate."""
    errors, n = sum(int(e["errors"]) for e in measured), sum(int(e["n"]) for e in measured)
    lo, hi = clopper_pearson(errors, n, confidence)
    return {"errors": errors, "n": n, "rate": errors / n, "lower": float(lo), "upper": float(hi),
            "confidence": confidence}


def difference_over_seeds(diffs, seeds, confidence: float = 0.95) -> str:
    """Per-seed differences of two rates (``a − b`` on the same evaluation set, one pair of models per
    seed) in points, with `mean_interval`'s t interval and what it allows one to say, e.g.
    ``+0.4 points [-0.9, +1.7] over 3 seeds, not told apart at 95%: inconclusive (seed 0: +0.0, ...)``."""
    m, lo, hi = mean_interval(diffs, confidence)
    told = not lo <= 0.0 <= hi
    verdict = (f"{'lower' if hi < 0 else 'higher'} at {confidence:.0%} across training runs" if told else
               f"not told apart at {confidence:.0%}: inconclusive")
    each = ", ".join(f"seed {s}: {100 * float(x):+.1f}" for s, x in zip(seeds, diffs))
    lo_pt, hi_pt = _points_outward(lo, hi)
    return (f"{100 * m:+.1f} points [{lo_pt:+.1f}, "
            f"{hi_pt:+.1f}] over {len(diffs)} seeds, {verdict} ({each})")


def ci_note(confidence: float = 0.95) -> str:
    """The note under a table whose rates carry `pct_ci` intervals."""
    return (f"[lower, upper] after a rate: its exact {confidence:.0%} (Clopper–Pearson) interval in %, rounded "
            f"outward; (≤ u) / (≥ l): the one bound of a count of none / of all")


def num(v, fmt: str = ".3f") -> str:
    """``format(v, fmt)``; ``-`` for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def fmt_log10(v: float) -> str:
    """A rate given by its log10: ``0`` for -inf, ``1.23e-45`` while float64 holds it, else
    ``10^-512.3`` (rates far below float64's range are kept as logs in summaries)."""
    if v is None:
        return "-"
    if v == -math.inf:
        return "0"
    if v > -300:
        return f"{10 ** v:.3g}"
    return f"10^{v:.1f}"


def fmt_rate(e: dict) -> str:
    """A measured rate ``{"errors", "n", "rate", "lower", "upper", "confidence"}`` as
    ``errors/n = rate [lower, upper]``; a zero count shows its upper bound only."""
    conf = e.get("confidence", 0.95)
    if e["errors"] == 0:
        return f"0/{e['n']:,} (≤ {e['upper']:.2g} at {conf:.0%})"
    return f"{e['errors']}/{e['n']:,} = {e['rate']:.3g} [{e['lower']:.2g}, {e['upper']:.2g}]"


def in_order(d: dict, order: Sequence) -> list:
    """``d``'s items in ``order`` first (summaries are written with sorted keys), then the rest."""
    order = list(order)
    return sorted(d.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
