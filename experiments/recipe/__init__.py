"""The PROFIT paper's CIFAR-10 → CIFAR-100 recipe (Table 2, Table 10) on offline data.

Fashion-MNIST classes 0-4 → 5-9 with the MLP or the ViT-mini: pretrain to
convergence, fine-tune every method at its own learning rate (tuned on
validation data carved from the training split, on tuning seeds), equal gradient
evaluations, and the paper's λ-ratio and n_ref ablations. See
``docs/paper_recipe.md``.
"""
