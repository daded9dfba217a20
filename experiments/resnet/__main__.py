"""Entry point for ``python -m experiments.resnet``."""

from experiments.resnet.main import main

if __name__ == "__main__":
    main()
