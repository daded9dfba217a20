"""Entry point for ``python -m experiments.recipe``."""

from absl import app

from experiments.recipe.main import main

if __name__ == "__main__":
    app.run(main)
