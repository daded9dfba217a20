"""MLP variant of the old-task/new-task fine-tuning experiment (same pipeline as the ViT)."""
