"""Side-by-side speed benchmarks (issue 8): ``python -m benchmarks.run [--size tiny|full] [--only NAME]``.

Each module here is one benchmark with ``NAME``, ``TITLE``, ``GOAL``, ``SIZES`` and
``run(ctx) -> dict``; `benchmarks.run` runs them in one process, records the machine and its load,
writes ``benchmarks/results/<machine>-<date>.json`` and a markdown table (``latest.md``).
"""

import os

# NumPy's OpenBLAS serves only the SciPy baselines (per-example L-BFGS-B: 784-long vectors, where
# threads do not help: measured 26.5 examples/s with one thread vs 25 with two on FC100-100-10).
# Its idle threads spin after every call and steal the core XLA's next timing needs, so one
# thread, set before NumPy is first imported (an explicit OPENBLAS_NUM_THREADS wins).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
