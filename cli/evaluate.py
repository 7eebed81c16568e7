"""`lightning evaluate`: the negative-ELBO perplexity bound of a checkpoint on a text file, with its error.

    lightning evaluate --ckpt_path .../last.ckpt --text some.txt [--time_samples 8] [--seq_len 128]
        [--batch_size 8] [--seed 0] [--json] [--output FILE] [--config cfg.yaml] [--device cpu]
        [--order left-to-right|random --orders K [--score_total 1.0]]

What is computed, and its standard error: evaluation/likelihood.py. Generative perplexity of samples under an
AR judge is its own command, `lightning judge` (cli/judge.py).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict

import torch

from cli.arguments import CommandParser, check_device, check_output, write_output
from data import TextCorpus
from evaluation.likelihood import ORDERS, Evaluation, evaluate, format_evaluation
from evaluation.restore import load_trained


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lightning evaluate",
        description="Negative-ELBO perplexity bound (AR: exact NLL) of a checkpoint on a text file, and the "
        "fixed-order likelihood beside it.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning fit`, or an exported or "
                        "released model's directory")
    parser.add_argument("--text", "--text_path", dest="text", required=True, help="text file (or directory of .txt)")
    parser.add_argument("--time_samples", type=int, default=8, help="K stratified draws (counts or times) per sequence")
    parser.add_argument("--seq_len", type=int, help="tokens per sequence (default: the training seq_len)")
    parser.add_argument("--batch_size", type=int, default=8, help="sequences per network call (times K rows)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the time and noise draws and of the orders")
    parser.add_argument("--order", choices=ORDERS, help="also report the exact fixed-order likelihood (absorbing)")
    parser.add_argument("--orders", type=int, default=1, help="random orders K for --order random")
    parser.add_argument("--score_total", type=float, default=1.0,
                        help="sigma-bar at which a concrete-score network is read as a denoiser for --order")
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in the checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return parser


def run(arguments: argparse.Namespace) -> Evaluation:
    """The evaluate command on parsed arguments; writes the report and returns it."""
    for name in ("time_samples", "batch_size", "orders"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(arguments, name)}")
    if arguments.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {arguments.seed}")
    if arguments.orders > 1 and arguments.order != "random":
        raise ValueError(f"--orders {arguments.orders} needs --order random (left to right is one order)")
    if not (math.isfinite(arguments.score_total) and arguments.score_total > 0):
        raise ValueError(f"--score_total must be a finite number > 0, got {arguments.score_total}")
    check_output(arguments.output)
    TextCorpus(arguments.text, argument="--text")  # a missing file fails before the checkpoint is read
    trained = load_trained(arguments.ckpt_path, arguments.config, check_device(arguments.device))
    if trained.kind == "classifier":
        raise ValueError("--ckpt_path holds a classifier of noisy sequences, which has no likelihood; evaluate a "
                         "diffusion or autoregressive checkpoint")
    seq_len = trained.seq_len if arguments.seq_len is None else arguments.seq_len
    trained.check_length(seq_len, "--seq_len")
    result = evaluate(
        trained, arguments.text, arguments.time_samples, seq_len, arguments.seed, arguments.batch_size,
        arguments.ckpt_path, arguments.order, arguments.orders, arguments.score_total,
    )
    text = json.dumps(asdict(result), indent=2) + "\n" if arguments.json else format_evaluation(result)
    write_output(text, arguments.output)
    return result


def main(argv: Sequence[str]) -> Evaluation:
    """Entry point of `lightning evaluate ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
