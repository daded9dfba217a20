"""Entry point for ``python -m experiments.toy2d``."""

from experiments.toy2d.main import cli

if __name__ == "__main__":
    cli()
