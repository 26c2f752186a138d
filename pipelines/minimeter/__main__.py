"""``python -m minimeter``: the same command line as the ``minimeter`` script."""

import sys

from minimeter.cli import main

if __name__ == "__main__":
    sys.exit(main())
