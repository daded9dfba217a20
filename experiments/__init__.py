"""Experiments for profit-optax: ViT/MLP fine-tuning on TFDS images, shared utilities."""
