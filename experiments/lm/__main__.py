"""Entry point for ``python -m experiments.lm``."""

from experiments.lm.main import main

if __name__ == "__main__":
    main()
