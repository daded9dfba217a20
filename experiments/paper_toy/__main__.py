"""Entry point for ``python -m experiments.paper_toy``."""

from experiments.paper_toy.main import main

if __name__ == "__main__":
    main()
