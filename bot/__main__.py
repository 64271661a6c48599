"""`python -m bot`: the same as the `wanbot` console script."""

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main())
