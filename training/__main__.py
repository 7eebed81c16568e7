"""`python -m training ...` is the `lightning` command (training.cli.main)."""

from training.cli import main

if __name__ == "__main__":
    main()
