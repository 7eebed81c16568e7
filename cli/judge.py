"""`lightning judge`: generative perplexity of samples under an autoregressive checkpoint.

    lightning judge --judge ar.ckpt --samples samples.txt [--json]             (score a samples file)
    lightning judge --judge ar.ckpt --ckpt_path model.ckpt [--num_samples 8] [--steps 128]
        [--sampler euler] [--length L] [--seed 0] [--json]                    (generate, then score)

`lightning evaluate --judge ...` is the same command (kept for the scripts that call it so). What is computed:
evaluation/judge.py.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

import torch

from cli.arguments import CommandParser, check_device, check_output, write_output
from evaluation.judge import JudgeReport, format_judge, judge_file, judge_model
from evaluation.restore import load_trained


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lightning judge",
        description="Generative perplexity of samples (a file, or drawn from --ckpt_path) under an AR checkpoint.",
    )
    parser.add_argument("--judge", help="AR checkpoint that scores the samples (configs/ar.yaml); required")
    parser.add_argument("--samples", help="samples to judge: `lightning sample` output or one sample per line")
    parser.add_argument("--ckpt_path", help="the model that drew the samples, or draws them without --samples")
    parser.add_argument("--num_samples", type=int, default=8, help="without --samples: samples to draw")
    parser.add_argument("--sampler", default="euler", help="without --samples: the sampler of a diffusion model")
    parser.add_argument("--steps", type=int, help="without --samples: sampler steps")
    parser.add_argument("--length", type=int, help="without --samples: tokens per sample (default: training seq_len)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples drawn")
    parser.add_argument("--batch_size", type=int, default=8, help="samples per judge call")
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in --ckpt_path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return parser


def run(arguments: argparse.Namespace) -> JudgeReport:
    """The judge command on parsed arguments; writes the report and returns it."""
    for name in ("num_samples", "batch_size"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(arguments, name)}")
    if arguments.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {arguments.seed}")
    if arguments.judge is None:
        raise ValueError(f"{'--samples needs' if arguments.samples else 'give'} --judge ar.ckpt, the autoregressive "
                         "checkpoint that scores the samples (configs/ar.yaml)")
    if arguments.samples is None and arguments.ckpt_path is None:
        raise ValueError("--judge needs --samples FILE, or --ckpt_path of a model to generate the samples from")
    check_output(arguments.output)
    device = check_device(arguments.device)
    judge = load_trained(arguments.judge, None, device)
    judge.require_kind("autoregressive", "--judge")
    model = None if arguments.ckpt_path is None else load_trained(arguments.ckpt_path, arguments.config, device)
    if arguments.samples is not None:
        report = judge_file(judge, arguments.samples, model, arguments.batch_size)
    else:
        length = model.seq_len if arguments.length is None else arguments.length
        options = {} if arguments.steps is None or model.kind == "autoregressive" else {"steps": arguments.steps}
        report = judge_model(judge, model, arguments.num_samples, length, arguments.seed, arguments.sampler, options,
                             arguments.batch_size)
    text = json.dumps(asdict(report), indent=2) + "\n" if arguments.json else format_judge(report)
    write_output(text, arguments.output)
    return report


def main(argv: Sequence[str]) -> JudgeReport:
    """Entry point of `lightning judge ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
