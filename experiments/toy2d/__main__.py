"""Entry point for ``python -m experiments.toy2d``."""

from experiments.toy2d.main import main

if __name__ == "__main__":
    main()
