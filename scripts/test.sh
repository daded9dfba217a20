#!/usr/bin/env bash
# Sets up .venv (package + experiments, test, notebook and docs extras), then runs the
# linters, the type checker on the package, the docs build (warnings are errors) and the
# whole test suite (library doctests, tests/, notebooks).
source "$(dirname "$0")/_env.sh" "experiments,test,notebooks,docs"
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy  # [tool.mypy] in pyproject.toml: the profit_optax package
echo "==> docs"
# -E: read every page afresh, so a warning of an unchanged page is not skipped.
.venv/bin/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html
export PROFIT_DOCS_HTML=docs/_build/html  # tests/test_docs.py reads this build
echo "==> pytest"
exec .venv/bin/python -m pytest -q "$@"
