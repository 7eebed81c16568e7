"""`lightning export`: a checkpoint of `lightning fit` as a shareable directory without Lightning.

    lightning export --ckpt_path logs/.../last.ckpt --out my-model/

writes my-model/model.safetensors (the EMA network's weights) and my-model/config.json (the run's model and data
sections), the layout of a released model: `models.from_pretrained("my-model")` and every command
(`lightning sample --ckpt_path my-model`, `lightning evaluate ...`, `lightning fit --init_from my-model`) read it
back to the same outputs (models/pretrained/native.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cli.arguments import CommandParser
from models.pretrained.native import export_checkpoint, read_checkpoint


def build_parser() -> CommandParser:
    parser = CommandParser(prog="lightning export", description="Write a checkpoint's EMA network as "
                           "model.safetensors + config.json (the layout models.from_pretrained reads).")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning fit`")
    parser.add_argument("--out", required=True, help="the directory to write (new, or empty)")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in the checkpoint")
    return parser


def run(arguments: argparse.Namespace) -> Path:
    """The export command on parsed arguments; prints where it wrote and returns the directory."""
    checkpoint = read_checkpoint(arguments.ckpt_path, config=arguments.config)
    target = export_checkpoint(checkpoint, arguments.out)
    print(f"exported {checkpoint.path} to {target} (model.safetensors, config.json)")
    return target


def main(argv: Sequence[str]) -> Path:
    """Entry point of `lightning export ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
