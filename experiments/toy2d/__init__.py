"""The paper's 2D regression toy: fine-tune an MLP converged on old data on proximal new data.

Run ``python -m experiments.toy2d [--config=experiments/toy2d/config.py[:quick]]``; see
``docs/toy2d.md``.
"""
