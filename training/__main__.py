"""`python -m training ...` is the `lightning` command (cli.main.console)."""

import sys

from cli.main import console

if __name__ == "__main__":
    sys.exit(console())
