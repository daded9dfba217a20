"""ml_collections config files for the MLP experiments (``--config path/to/file.py``)."""
