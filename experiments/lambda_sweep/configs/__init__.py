"""ml_collections configs of the λ_ref sweeps:
``--config=experiments/lambda_sweep/configs/<task>.py``."""
