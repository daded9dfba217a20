#!/usr/bin/env bash
# Sets up .venv (package + experiments, test and notebook extras), then runs the
# linters and the whole test suite (library doctests, tests/, notebooks).
source "$(dirname "$0")/_env.sh" "experiments,test,notebooks"
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest"
exec .venv/bin/python -m pytest -q "$@"
