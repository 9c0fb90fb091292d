"""``python -m unilab`` -> :func:`unilab.cli.main`."""

import sys

from unilab.cli import main
from unilab.router import RouterError

if __name__ == "__main__":
    try:
        main()
    except RouterError as error:  # a user error like any other: error: <message>, exit code 2
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
