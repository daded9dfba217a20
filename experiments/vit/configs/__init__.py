"""ml_collections config files for the ViT experiments (``--config path/to/file.py``)."""
