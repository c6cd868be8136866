"""``python -m advcore``: the command line (see :mod:`advcore.cli`)."""

import sys

from advcore.cli.framework import main

if __name__ == "__main__":
    sys.exit(main())
