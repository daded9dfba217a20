"""Generic experiment utilities: data pipeline, train/eval loop over a Method, results, plots."""
