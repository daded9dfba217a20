#!/usr/bin/env bash
# Sets up .venv (package + experiments, test, notebook and docs extras), then runs the
# linters, the type checker on the package, the docs build (warnings are errors), the
# whole test suite (library doctests, tests/, notebooks), then the rounding-sensitive
# tests again under a second CPU instruction set (x86-64 only).
source "$(dirname "$0")/_env.sh" "experiments,test,notebooks,docs"
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy  # [tool.mypy] in pyproject.toml: the profit_optax package
echo "==> docs"
# -E: read every page afresh, so a warning of an unchanged page is not skipped.
.venv/bin/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html
export PROFIT_DOCS_HTML=docs/_build/html  # tests/docs/test_docs.py reads this build
echo "==> pytest"
# One worker per core (pytest-xdist), a test file per worker at a time: the module-scoped
# fixtures (a quick suite's runs) are built once.
.venv/bin/python -m pytest -q -n auto --dist loadfile "$@"
# XLA compiles for the host's instruction set, so reductions round differently on other
# CPUs. The tests whose outcome rounding could move (marker `numerics`: sharded and
# multi-process equality, the lean mode's accuracy claim) run again under a second one.
if [ "$#" -eq 0 ] && [ "$(uname -m)" = x86_64 ]; then
  echo "==> pytest -m numerics under XLA_FLAGS=--xla_cpu_max_isa=SSE4_2"
  XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_cpu_max_isa=SSE4_2" \
    .venv/bin/python -m pytest -q -n auto --dist loadfile -m numerics -p no:cacheprovider
fi
