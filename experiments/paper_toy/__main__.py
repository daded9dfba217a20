"""Entry point for ``python -m experiments.paper_toy``."""

from absl import app

from experiments.paper_toy.main import main

if __name__ == "__main__":
    app.run(main)
