"""The MLP classifier of the recipe suites and the benchmarks."""
