"""Side-by-side speed benchmarks (issue 8): ``python -m benchmarks.run [--size tiny|full] [--only NAME]``.

Each module here is one benchmark with ``NAME``, ``TITLE``, ``GOAL``, ``SIZES`` and
``run(ctx) -> dict``; `benchmarks.run` runs them in one process, records the machine and its load,
writes ``benchmarks/results/<machine>-<date>.json`` and a markdown table (``latest.md``).
"""
