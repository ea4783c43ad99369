"""Paper values as data: what a paper reports, where, and how sure we are that it says so.

Every experiment declares the paper values it is compared with (``PAPER`` in its module) and a
``paper_rows(summary)`` that pairs each with our number from the run's summary. ``spheres
report`` and the generated results pages render the pairs as *quantity | paper | ours*.

``status`` says how the value was checked: ``verified`` (read in the paper's own text, table or
figure), ``secondary`` (from summaries or public reproductions of the paper), ``unverified`` (a
claim about the paper that no source we have confirms).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Status = Literal["verified", "secondary", "unverified"]
PAPERS = {
    "gilmer": "Gilmer et al. 2018, Adversarial Spheres (arXiv:1801.02774)",
    "szegedy": "Szegedy et al. 2013, Intriguing properties of neural networks (arXiv:1312.6199)",
    "goodfellow": "Goodfellow, Shlens, Szegedy 2015, Explaining and Harnessing Adversarial Examples "
                  "(arXiv:1412.6572)",
}


@dataclasses.dataclass(frozen=True)
class PaperValue:
    """One number (or claim) a paper reports. ``value`` is the paper's, as text; ``where`` the
    section, table or figure; ``dataset`` the data it was measured on (MNIST for the image papers)."""

    quantity: str
    value: str
    paper: str
    where: str
    status: Status
    dataset: str = ""

    def __post_init__(self):
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r}; one of {', '.join(PAPERS)}")
        if self.status not in ("verified", "secondary", "unverified"):
            raise ValueError(f"status must be verified, secondary or unverified, not {self.status!r}")

    def cite(self) -> str:
        """``value (where; status)``, e.g. ``≈ 0.18 (§3; unverified)``."""
        on = f", {self.dataset}" if self.dataset else ""
        return f"{self.value} ({self.where}{on}; {self.status})"


@dataclasses.dataclass(frozen=True)
class PaperRow:
    """A paper value beside ours. ``quantity`` overrides the value's own (e.g. per N of a sweep);
    ``note`` qualifies the comparison (different data set, different statistic, ...)."""

    value: PaperValue
    ours: str
    quantity: str = ""
    note: str = ""

    def cells(self) -> tuple[str, str, str]:
        ours = f"{self.ours} ({self.note})" if self.note else self.ours
        return (self.quantity or self.value.quantity, self.value.cite(), ours)
