"""``python -m unilab`` -> :func:`unilab.cli.main`."""

from unilab.cli import main

if __name__ == "__main__":
    main()
