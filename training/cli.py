"""The `lightning` / `ctmc-train` / `python -m training` command.

    lightning fit -c configs/sedd.yaml [--trainer.max_steps=...]      # also validate, test, predict
    lightning sample --ckpt_path logs/.../last.ckpt [--steps 128 --prefix "ROMEO:"]   (training/sample.py)
    lightning evaluate --ckpt_path logs/.../last.ckpt --text some.txt [--time_samples 8]  (training/evaluate.py)

fit/validate/test/predict are LightningCLI's over `DiffusionModule` and `training.data.TextDataModule`;
the vocabulary size is linked from the data module to the module (written once), the atomic checkpoint and
the sample logger are configurable callbacks (`checkpoint.*`, `samples.*`). Errors in the configuration's
values (a missing corpus, a sequence longer than the network accepts) are reported on one line, before any
training starts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from training.checkpoint import AtomicModelCheckpoint
from training.data import TextDataModule
from training.module import CONFIG_KEY, DiffusionModule
from training.sample_logging import SampleLogger


def default_loggers(save_dir: str = "logs") -> list[dict[str, Any]]:
    """CSV logging always (metrics.csv); TensorBoard as well when it is installed."""
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": save_dir}}]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(
            {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": save_dir}}
        )
    return loggers


class DiffusionCLI(LightningCLI):
    """LightningCLI with the vocabulary link, atomic checkpoints, sample logging and one-line value errors."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.add_lightning_class_args(AtomicModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(SampleLogger, "samples")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
            self.model.check_data(self.datamodule.vocab_size, self.datamodule.hparams.seq_len)
            self.check_checkpoint()
        except (ValueError, FileNotFoundError) as error:
            message = " ".join(str(error).split())
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from error
        config = self.config[self.subcommand] if self.subcommand else self.config
        dumped = yaml.safe_load(self._parser(self.subcommand).dump(config, skip_check=True))
        self.model.run_config = yaml.safe_dump({key: dumped[key] for key in ("model", "data")})


    def check_checkpoint(self) -> None:
        """Raise ValueError if --ckpt_path names a checkpoint trained with another vocabulary size."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        path = config.get("ckpt_path") if hasattr(config, "get") else None
        if not path or path in ("last", "best", "hpc", "registry") or not os.path.isfile(path):
            return
        stored = torch.load(path, map_location="cpu", weights_only=True).get(CONFIG_KEY, {})
        if stored.get("vocab_size", self.model.vocab_size) != self.model.vocab_size:
            raise ValueError(
                f"ckpt_path={path} was trained with vocab_size {stored['vocab_size']}, but data.tokenizer gives "
                f"{self.model.vocab_size}; use the checkpoint's data.tokenizer (see its stored config)"
            )


def run_lightning(args: Sequence[str] | None = None) -> DiffusionCLI:
    """LightningCLI over DiffusionModule and TextDataModule; returns the CLI (its .trainer, .model)."""
    return DiffusionCLI(
        DiffusionModule,
        TextDataModule,
        args=None if args is None else list(args),
        trainer_defaults={"logger": default_loggers()},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"description": __doc__.split("\n\n")[0]},
    )


def main(args: Sequence[str] | None = None) -> Any:
    """Entry point: `sample` and `evaluate` go to their own parsers, everything else to LightningCLI."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "sample":
        from training.sample import main as sample_main

        return sample_main(argv[1:])
    if argv and argv[0] == "evaluate":
        from training.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    return run_lightning(None if args is None else argv)


def console() -> int:
    """The console-script entry (`lightning`, `ctmc-train`, `python -m training`): an exit status.

    `main` returns the LightningCLI object after fit/validate/test; a console script would hand it to
    sys.exit, which prints it and exits with status 1. Only an int returned by a command is a status.
    """
    result = main()
    return result if isinstance(result, int) else 0
