"""`python -m training ...` is the `lightning` command (training.cli.console)."""

import sys

from training.cli import console

if __name__ == "__main__":
    sys.exit(console())
