"""The paper's 2D regression toy: fine-tune an MLP converged on old data on proximal new data.

Run ``python -m experiments.toy2d [--quick] [--seeds 0 1 2] [--out DIR]``; see ``docs/toy2d.md``.
"""
