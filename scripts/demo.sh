#!/usr/bin/env bash
# Sets up .venv, then runs the main demo: the paper's 2D regression toy, every
# method of the registry, several seeds; writes a table and figures to runs/toy2d.
source "$(dirname "$0")/_env.sh" "experiments"
exec .venv/bin/python -m experiments.toy2d --out runs/toy2d "$@"
