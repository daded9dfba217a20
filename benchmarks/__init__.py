"""Benchmarks of profit-optax: update cost, training-step cost, memory, compile time,
collectives under sharding, large models.

Each module is runnable on its own (``python -m benchmarks.<name> --help``);
``python -m benchmarks.run_all`` runs them all (``--quick`` for a smoke run) and
``python -m benchmarks.report`` renders ``benchmarks/RESULTS.md`` from
``benchmarks/results/``. See ``benchmarks/README.md``.
"""
