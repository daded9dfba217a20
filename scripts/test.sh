#!/usr/bin/env bash
# Sets up .venv (package + experiments, test and notebook extras), then runs the
# linters, the type checker on the package and the whole test suite (library doctests,
# tests/, notebooks).
source "$(dirname "$0")/_env.sh" "experiments,test,notebooks"
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy  # [tool.mypy] in pyproject.toml: the profit_optax package
echo "==> pytest"
exec .venv/bin/python -m pytest -q "$@"
