"""The ViT-mini (and the named ViT sizes) of the recipe suites and the benchmarks."""
