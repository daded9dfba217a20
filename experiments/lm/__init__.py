"""Language-model fine-tuning (issue 30): byte-level transformer, full and LoRA."""
