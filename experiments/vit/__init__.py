"""ViT fine-tuning experiment: pretrain on an old task, fine-tune each optimizer on a new task."""
