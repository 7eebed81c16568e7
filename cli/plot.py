"""`lightning plot`: the learning curve of a run (training loss, validation bound +- SE, the unigram line).

    lightning plot --metrics logs/lightning_logs/version_0/metrics.csv [--out curve.png]

`lightning fit` draws the same figure into its run folder at the end (learning_curve.png); this command draws it
for any metrics.csv, e.g. of a run still going. What is drawn: evaluation/curves.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cli.arguments import CommandParser, check_output
from evaluation.curves import plot_curve, read_curve


def build_parser() -> CommandParser:
    parser = CommandParser(prog="lightning plot", description="Draw a run's learning curve from its metrics.csv.")
    parser.add_argument("--metrics", required=True, help="the metrics.csv of a run")
    parser.add_argument("--out", help="PNG to write (default: learning_curve.png beside metrics.csv)")
    return parser


def run(arguments: argparse.Namespace) -> Path:
    """The plot command on parsed arguments; prints where the figure is and returns its path."""
    curve = read_curve(arguments.metrics)
    out = arguments.out or str(Path(arguments.metrics).with_name("learning_curve.png"))
    check_output(out)
    path = plot_curve(curve, out)
    print(f"learning curve: {path}")
    return path


def main(argv: Sequence[str]) -> Path:
    """Entry point of `lightning plot ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
