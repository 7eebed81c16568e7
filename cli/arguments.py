"""What every command shares: one-line errors (`fail`, `CommandParser`), the output file and the device.

Every bad option or value ends a command with one line on stderr, `error: <what is wrong and what to change>`,
and exit status 2, as the LightningCLI subcommands do (cli/fit.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

SIGNAL_EXIT_BASE = 128  # a process stopped by signal N exits with 128 + N, as shells report it


def check_device(name: str) -> torch.device:
    """torch.device(name), or ValueError (one line, naming --device) if it is malformed or absent here."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device: {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            raise ValueError(f"--device {name}: this torch build has no CUDA support (a CPU build); use --device cpu")
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch sees no CUDA GPU on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s); use cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return device


class CommandParser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: ...` on stderr and exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message}; see `{self.prog} --help`")

    def run(self, argv: Sequence[str], action: Callable[[argparse.Namespace], Any]) -> Any:
        """Parse argv and call action(namespace); ValueError, TypeError and OSError become one-line errors."""
        arguments = self.parse_args(list(argv))
        try:
            return action(arguments)
        except (ValueError, TypeError, OSError) as error:
            fail(str(error))


def check_output(path: str | None) -> None:
    """Raise ValueError unless `path` is None or a file that can be created (its directory exists)."""
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise ValueError(f"--output: the directory of {path!r} does not exist; create it or write elsewhere")


def write_output(text: str, path: str | None) -> None:
    """Print `text` (path None) or write it to the file `path` (checked beforehand by `check_output`)."""
    if path is None:
        print(text, end="")
        return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def fail(message: str) -> NoReturn:
    """Print `error: message` on one line to stderr and exit with status 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)
