"""``python -m unilab`` -> :func:`unilab.cli.main`."""

import sys

from unilab.cli import main
from unilab.router import RouterError

if __name__ == "__main__":
    try:
        main()
    except RouterError as error:
        sys.exit(f"error: {error}")
