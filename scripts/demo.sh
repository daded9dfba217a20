#!/usr/bin/env bash
# Sets up .venv, then runs the main demo: the PROFIT paper's 2D toy (Table 1) by the paper's
# protocol, its three rows (full fine-tuning, head only, PROFIT at every λ ratio) at the paper's
# learning rate on 3 seeds; writes results.md, results.json and figures to runs/paper_toy.
# The full suite (every method, tuned on validation) is `python -m experiments.paper_toy`.
source "$(dirname "$0")/_env.sh" "experiments"
exec .venv/bin/python -m experiments.paper_toy --config=experiments/paper_toy/config.py:demo \
    --workdir runs/paper_toy/cache --out runs/paper_toy "$@"
