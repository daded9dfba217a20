"""Benchmarks of profit-optax: update cost, training-step cost, memory, compile time.

Each module is runnable on its own (``python -m benchmarks.<name> --help``);
``python -m benchmarks.run_all`` runs them all (``--quick`` for a smoke run).
See ``benchmarks/README.md`` and ``benchmarks/RESULTS.md``.
"""
