"""The `lightning` / `ctmc-train` / `python -m training` command: one subcommand per module of this package.

    lightning fit -c configs/sedd.yaml [--trainer.max_steps=...]      (also validate, test, predict: cli/fit.py)
    lightning sample --ckpt_path logs/.../last.ckpt [--steps 128 --prefix "ROMEO:"]          (cli/sample.py)
    lightning evaluate --ckpt_path logs/.../last.ckpt --text some.txt [--time_samples 8]     (cli/evaluate.py)
    lightning judge --judge ar.ckpt --samples samples.txt                                      (cli/judge.py)
    lightning export --ckpt_path logs/.../last.ckpt --out my-model/                           (cli/export.py)
    lightning plot --metrics logs/lightning_logs/version_0/metrics.csv                        (cli/plot.py)

Each command module only parses its arguments and calls the library (evaluation, training); this module only
picks the command. Errors are one line, `error: ...`, exit status 2.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from cli.arguments import SIGNAL_EXIT_BASE
from training.allocator import retain_freed_memory

JUDGE_OPTIONS = ("--judge", "--samples")  # `lightning evaluate` with one of these is `lightning judge`
# What third-party code warns about its own use of other third-party APIs (Lightning's pytree helper on torch's,
# LightningCLI on jsonargparse's deprecated methods): not the user's to act on, so a command does not print it.
# pyproject.toml's pytest filterwarnings lists the same messages for the test suite.
THIRD_PARTY_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"\s*By default only one JsonargparseDeprecationWarning",
    r"\s*.*was deprecated in v4\.49\.0",
)


def _command(name: str) -> Callable[[Sequence[str]], Any] | None:
    """The `main` of the command module `name` (imported on use: `sample` need not import Lightning's CLI)."""
    if name == "sample":
        from cli.sample import main
    elif name == "evaluate":
        from cli.evaluate import main
    elif name == "judge":
        from cli.judge import main
    elif name == "export":
        from cli.export import main
    elif name == "plot":
        from cli.plot import main
    else:
        return None
    return main


def main(args: Sequence[str] | None = None) -> Any:
    """Entry point: `sample`, `evaluate`, `judge`, `export` and `plot` go to their own parsers (`evaluate --judge`
    or `evaluate --samples` is `judge`), everything else to LightningCLI (cli/fit.py)."""
    argv = list(sys.argv[1:] if args is None else args)
    name = argv[0] if argv else ""
    if name == "evaluate" and any(item.split("=")[0] in JUDGE_OPTIONS for item in argv[1:]):
        name = "judge"  # the judge's options given to `evaluate`, as before `judge` was its own command
    command = _command(name)
    if command is not None:
        return command(argv[1:])
    from cli.fit import run_lightning

    return run_lightning(None if args is None else argv)


def console() -> int:
    """The console-script entry (`lightning`, `ctmc-train`, `python -m training`): an exit status.

    `main` returns the LightningCLI object after fit/validate/test; a console script would hand it to
    sys.exit, which prints it and exits with status 1. An int returned by a command is its status; the CLI
    object's `exit_status` is 0, or 128 + the signal number after a fit stopped by SIGINT / SIGTERM.
    glibc's malloc is first told to keep freed memory (training.allocator; opt out with CTMC_MALLOC=default), and
    third-party deprecation notices (THIRD_PARTY_WARNINGS) are silenced.
    """
    retain_freed_memory()
    for message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    try:
        result = main()
    except KeyboardInterrupt:  # Ctrl-C before training started (during training the checkpoint callback stops)
        print("error: interrupted (Ctrl-C); nothing was trained or saved", file=sys.stderr)
        return SIGNAL_EXIT_BASE + int(signal.SIGINT)
    return result if isinstance(result, int) else getattr(result, "exit_status", 0)
