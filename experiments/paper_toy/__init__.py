"""The PROFIT paper's 2D regression toy (Table 1), by the paper's own protocol.

``python -m experiments.paper_toy`` pretrains the paper's MLP on the "old" square,
fine-tunes it on the "new" square with every method of the registry, tunes each
method's learning rate (and PROFIT's λ ratio) on validation data carved from the
training sets, and reports test errors on noiseless points beside the paper's
Table 1. See ``docs/paper_toy.md``.
"""
