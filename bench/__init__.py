"""Side-by-side benchmark of the narun gateway against direct uvicorn, Caddy and nginx.

Run ``make bench`` or ``python -m bench.run --help``; see ``docs/benchmarks.md``.
"""
