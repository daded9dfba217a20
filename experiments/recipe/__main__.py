"""Entry point for ``python -m experiments.recipe``."""

from experiments.recipe.main import main

if __name__ == "__main__":
    main()
