"""The exact (Clopper–Pearson) binomial interval: the one implementation every rate in the project uses.

For ``k`` successes in ``n`` trials and ``a = 1 − confidence``:

    lower = B⁻¹(a/2; k, n − k + 1),    upper = B⁻¹(1 − a/2; k + 1, n − k)

(Clopper & Pearson 1934), with ``lower = 0`` at ``k = 0`` and ``upper = 1`` at ``k = n``. The ends
have closed forms, computed without cancellation: at ``k = 0``, ``upper = 1 − (a/2)^(1/n)``
(0 errors in 10⁷ at 95 %: 3.69e-7); at ``k = n``, ``lower = (a/2)^(1/n)``.
"""

from __future__ import annotations

import math

from scipy import stats


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval ``(lower, upper)`` for a binomial proportion (see the module doc)."""
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a = 1.0 - confidence
    if k == 0:
        lower = 0.0
    elif k == n:
        lower = math.exp(math.log(a / 2) / n)
    else:
        lower = float(stats.beta.ppf(a / 2, k, n - k + 1))
    if k == n:
        upper = 1.0
    elif k == 0:
        upper = -math.expm1(math.log(a / 2) / n)
    else:
        upper = float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lower, upper
