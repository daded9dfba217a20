"""profit-optax: PROFIT and fine-tuning baselines as Optax gradient transformations."""

__version__ = "0.1.0"
