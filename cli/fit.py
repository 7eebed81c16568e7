"""`lightning fit` (and validate, test, predict): LightningCLI over the training path.

    lightning fit -c configs/sedd.yaml [--trainer.max_steps=...]

fit/validate/test/predict are LightningCLI's over a `training.base_module.TrainingModule` (the one training
path: `model.class_path` picks the objective, `DiffusionModule` when the config names none, e.g.
configs/sedd.yaml; `training.autoregressive.ARModule` in configs/ar.yaml) and `training.datamodule.TextDataModule`;
the vocabulary size is linked from the data module to the module (written once), the atomic checkpoint and
the sample logger are configurable callbacks (`checkpoint.*`, `samples.*`). Errors in the configuration's
values (a missing corpus, a sequence longer than the network accepts) and every bad `--ckpt_path` are
reported on one line, `error: ...`, exit status 2, before any file is created. Everything a run writes goes
under `--trainer.default_root_dir` (default `logs/`). `fit` ends with a summary of where the checkpoint,
metrics and samples are, the last validation, and the command that samples from the checkpoint; a fit
stopped by SIGINT / SIGTERM saves `last.ckpt` (training/checkpoint.py) and exits with 128 + the signal.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from cli.arguments import SIGNAL_EXIT_BASE, fail
from evaluation.curves import plot_curve, read_curve
from models.pretrained import CheckpointError, from_pretrained
from models.pretrained.native import Checkpoint, read_checkpoint
from training.base_module import TrainingModule
from training.checkpoint import AtomicModelCheckpoint
from training.datamodule import TextDataModule
from training.progress import LineProgressBar
from training.sample_logging import SampleLogger

DEFAULT_MODEL = "training.module.DiffusionModule"  # the objective of a config whose model names no class_path
DEFAULT_ROOT = "logs"  # where logs, checkpoints and samples go unless --trainer.default_root_dir says otherwise
DEFAULT_LOG_NAME = "lightning_logs"  # the loggers' default `name`: runs go to <root>/lightning_logs/version_N
EPILOG = """other subcommands (their own options: `lightning sample --help`, ...):
  sample     Write text sampled from a trained checkpoint (cli/sample.py).
  evaluate   Negative-ELBO perplexity bound of a checkpoint on a text file (cli/evaluate.py).
  judge      Generative perplexity of samples under an AR checkpoint (cli/judge.py).
  export     Write a checkpoint as model.safetensors + config.json (cli/export.py).
"""
RESERVED_CKPT_PATHS = ("last", "best", "hpc", "registry")  # names Lightning resolves itself
SHARDED_CHECKPOINT_MARKERS = ("meta.pt", "latest")  # files in the checkpoint directory of FSDP / DeepSpeed


def default_loggers(save_dir: str = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """CSV logging always (metrics.csv, training.run_logger); TensorBoard as well when it is installed."""
    loggers = [{"class_path": "training.run_logger.RunCSVLogger", "init_args": {"save_dir": save_dir}}]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(
            {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": save_dir}}
        )
    return loggers


NOISE_LINES = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
               "Expected a <class 'NoneType'>")  # jsonargparse's account of the subclass union, not the cause


def one_line(message: str) -> str:
    """jsonargparse's multi-line account of a bad value on one line: the lines that name the cause, joined."""
    lines = [line.strip().removeprefix("- ").strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(NOISE_LINES)]
    return " ".join(kept)


class OneLineErrorParser(LightningArgumentParser):
    """LightningArgumentParser whose `error: ...` is one line (a bad key under the `model` class_path union
    would otherwise print the union's subtypes and the given value on further lines)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        super().error(one_line(message), ex)


class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help (types, defaults) with the description and epilog printed as written."""


def command_name() -> str:
    """How this command was invoked: `lightning` / `ctmc-train` when run as a console script, else
    `python -m training` (which works from the repository root in any case)."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return program if program in ("lightning", "ctmc-train") else "python -m training"


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """argv without `option VALUE` and `option=VALUE`."""
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(f"{option}="):
            kept.append(item)
    return kept


class DiffusionCLI(LightningCLI):
    """LightningCLI with the vocabulary link, atomic checkpoints, sample logging, one-line value errors, the
    logger following --trainer.default_root_dir, and a summary (with exit status) at the end of fit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", OneLineErrorParser)
        argv = kwargs.get("args")
        self.command_line = list(sys.argv[1:] if argv is None else argv)
        self._checkpoint: Checkpoint | None = None  # the --ckpt_path file, between the two checks
        self._resumed_step: int | None = None  # the global step of the --ckpt_path checkpoint
        self.exit_status = 0  # 128 + signal number when fit was stopped by SIGINT / SIGTERM
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}})
        parser.add_lightning_class_args(AtomicModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(SampleLogger, "samples")
        parser.add_argument(
            "--new_version", type=bool, default=False,
            help="resume --ckpt_path into a new lightning_logs/version_N folder (default: the checkpoint's own)",
        )
        parser.add_argument(
            "--init_from", type=str | None, default=None,
            help="fine-tune: start from the weights of a released (SEDD, RADD, MDLM) or exported model directory, or "
            "a checkpoint of `lightning fit` (models.from_pretrained); the config must build the same network",
        )

    def _config(self) -> Any:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def _parse_ckpt_path(self) -> None:
        """Check --ckpt_path first (LightningCLI reads it right after parsing, with no error handling).

        LightningCLI's own step then merges the checkpoint's `hyper_parameters` into the config; a checkpoint
        of a TrainingModule has none (its config is stored under CONFIG_KEY), so it runs only when some exist.
        """
        try:
            self.check_checkpoint_file()
        except ValueError as error:
            fail(str(error))
        if self._checkpoint is not None and self._checkpoint.hyper_parameters:
            super()._parse_ckpt_path()

    def _loggers(self) -> list[Any]:
        trainer = self._config().get("trainer")
        loggers = trainer.get("logger") if trainer is not None else None
        return [logger for logger in (loggers if isinstance(loggers, list) else [loggers])
                if getattr(logger, "init_args", None) is not None]

    def before_instantiate_classes(self) -> None:
        """Loggers left at the default save_dir (logs) write under trainer.default_root_dir when it is given; a fit
        resumed from `<save_dir>/<name>/version_N/checkpoints/last.ckpt` logs into that version_N folder (metrics
        appended after the resumed step, training.run_logger) unless --new_version is given."""
        trainer = self._config().get("trainer")
        root = trainer.get("default_root_dir") if trainer is not None else None
        if root is not None and str(root) != DEFAULT_ROOT:
            for logger in self._loggers():
                if str(logger.init_args.get("save_dir")) == DEFAULT_ROOT:
                    logger.init_args.save_dir = str(root)
        path = self._ckpt_path()
        if self.subcommand != "fit" or path is None or self._config().get("new_version"):
            return
        run = Path(path).resolve().parent
        if run.name != "checkpoints":
            return
        version, name, save_dir = run.parent.name, run.parent.parent.name, run.parent.parent.parent
        for logger in self._loggers():
            init_args = logger.init_args
            here = Path(str(init_args.get("save_dir", DEFAULT_ROOT))).resolve()
            if here == save_dir and init_args.get("name", DEFAULT_LOG_NAME) == name:
                init_args.version = version
                if str(logger.class_path).endswith("RunCSVLogger"):
                    init_args.resume_step = self._resumed_step

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        """The Trainer, with a plain line of progress instead of TQDM's bar when stderr is not a terminal."""
        if config.get("enable_progress_bar", True) is not False and not sys.stderr.isatty():
            every = int(config.get("log_every_n_steps") or 50)
            callbacks = [*callbacks, LineProgressBar(every_n_steps=max(every, 1))]
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
            self.model.check_data(self.datamodule.vocab_size, self.datamodule.hparams.seq_len)
            self.check_checkpoint()
            self.initialise()
        except (ValueError, FileNotFoundError, MisconfigurationException) as error:
            fail(one_line(str(error)))  # a constructor's message inside jsonargparse's account, on one line
        dumped = yaml.safe_load(self._parser(self.subcommand).dump(self._config(), skip_check=True))
        self.model.run_config = yaml.safe_dump({key: dumped[key] for key in ("model", "data")})

    def initialise(self) -> None:
        """--init_from: copy a loaded model's weights into the module before fit (TrainingModule.initialise_from)."""
        source = self._config().get("init_from")
        if source is None:
            return
        if self._ckpt_path() is not None:
            raise ValueError("--init_from starts a new run from a model's weights and --ckpt_path resumes a run; "
                             "give one of them")
        try:
            network = from_pretrained(source)
        except CheckpointError as error:
            raise ValueError(f"--init_from: {error}") from None
        self.model.initialise_from(network, str(source))

    def _ckpt_path(self) -> str | None:
        """--ckpt_path when it names a local checkpoint file to check; None for no path, the names Lightning
        resolves itself, remote URLs, and the checkpoint directories of sharded strategies (FSDP's holds
        meta.pt, DeepSpeed's a `latest` file), which Lightning reads with those strategies."""
        config = self._config()
        path = config.get("ckpt_path") if hasattr(config, "get") else None
        if not path or path in RESERVED_CKPT_PATHS or "://" in str(path):
            return None
        if any(os.path.isfile(os.path.join(path, marker)) for marker in SHARDED_CHECKPOINT_MARKERS):
            return None
        return str(path)

    def check_checkpoint_file(self) -> None:
        """Raise ValueError if --ckpt_path is missing, a directory or not a readable checkpoint (right after
        parsing, before any object is built, so that nothing is created); keep the checkpoint it read."""
        path = self._ckpt_path()
        self._checkpoint = None if path is None else read_checkpoint(path)
        self._resumed_step = None if self._checkpoint is None else self._checkpoint.global_step

    def check_checkpoint(self) -> None:
        """Raise ValueError if --ckpt_path was trained with another vocabulary size or holds another model's
        weights, or (fit) lacks the optimiser and loop state a resume needs."""
        path, checkpoint = self._ckpt_path(), self._checkpoint
        self._checkpoint = None  # Lightning reads the file again when it restores; do not hold two copies
        if path is None or checkpoint is None:
            return
        checkpoint.check_fits(self.model.KIND, self.model.vocab_size, "ckpt_path")
        mismatch = state_dict_mismatch(checkpoint.state_dict, self.model.state_dict())
        if mismatch is not None:
            network = checkpoint.model.get("network")
            kind = f" (it was trained with model.network={network.get('class_path', network)})" if isinstance(
                network, dict) else ""
            raise ValueError(
                f"ckpt_path={path} holds the weights of another model{kind}: {mismatch}; use the config the "
                "checkpoint was trained with"
            )
        if self.subcommand == "fit" and not checkpoint.resumable:
            raise ValueError(
                f"ckpt_path={path} holds weights only (no optimiser or loop state) and cannot resume fit; "
                "give a full checkpoint such as last.ckpt"
            )

    def fit(self, **kwargs: Any) -> None:
        """trainer.fit, then the summary; a SIGINT/SIGTERM stop (checkpoint saved) sets exit_status."""
        callback = self.trainer.checkpoint_callback
        try:
            self.trainer.fit(**kwargs)
        except SIGTERMException:
            stop = getattr(callback, "stop_signal", None) or signal.SIGTERM
            self.exit_status = SIGNAL_EXIT_BASE + int(stop)
        except MisconfigurationException as error:  # a trainer setting that only fails once fit starts
            fail(f"the trainer refused its settings: {error}")
        if self.trainer.is_global_zero:
            print(self.fit_summary(), flush=True)

    def fit_summary(self) -> str:
        """Where the checkpoint, metrics and samples are, the last validation, and the commands that follow."""
        trainer = self.trainer
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or None
        lines = []
        if self.exit_status:
            name = signal.Signals(self.exit_status - SIGNAL_EXIT_BASE).name
            lines.append(f"fit stopped by {name} at step {trainer.global_step}")
        else:
            lines.append(f"fit finished at step {trainer.global_step}")
        lines.append(f"  checkpoint: {checkpoint or 'none written'}")
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                metrics = logger.experiment.metrics_file_path
                lines.append(f"  metrics:    {metrics}" if os.path.isfile(metrics) else
                             "  metrics:    none logged (fewer steps than trainer.log_every_n_steps)")
                if os.path.isfile(metrics):
                    lines.append(f"  learning curve: {learning_curve(metrics)}")
        for callback in trainer.callbacks:
            if isinstance(callback, SampleLogger) and os.path.isfile(callback.path(trainer)):
                lines.append(f"  samples:    {callback.path(trainer)}")
        result = getattr(self.model, "validation_result", None) or {}
        if result:
            keys = sorted(result, key=lambda key: (key != "bits_per_token", key))
            values = ", ".join(f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}"
                               for key, value in ((key, result[key]) for key in keys))
            lines.append(f"  last validation: {values}")
        if checkpoint:
            program = command_name()
            if getattr(self.model, "KIND", "") == "classifier":
                lines.append(f"  guide with it:  {program} sample --ckpt_path MODEL --classifier "
                             f"{shlex.quote(checkpoint)} --label {self.model.class_names[0]} --guidance 1")
            else:
                lines.append(f"  sample from it: {program} sample --ckpt_path {shlex.quote(checkpoint)}")
            if self.exit_status:
                resume = [*without_option(self.command_line, "--ckpt_path"), f"--ckpt_path={checkpoint}"]
                lines.append(f"  resume it:      {program} {shlex.join(resume)}")
        return "\n".join(lines)


def learning_curve(metrics: str) -> str:
    """Draw the run's learning curve beside its metrics.csv (evaluation.curves); what to print in the summary."""
    try:
        return str(plot_curve(read_curve(metrics), Path(metrics).with_name("learning_curve.png")))
    except ValueError:  # no train or validation row yet
        return f"none yet; draw it later with `{command_name()} plot --metrics {shlex.quote(metrics)}`"


def state_dict_mismatch(stored: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """None if `stored` has the keys and tensor shapes of `expected`, else what differs first (one phrase)."""
    missing = [key for key in expected if key not in stored]
    if missing:
        return f"{len(missing)} weight(s) missing, e.g. {missing[0]!r}"
    unexpected = [key for key in stored if key not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected weight(s), e.g. {unexpected[0]!r}"
    for key, value in expected.items():
        shape = getattr(stored[key], "shape", None)
        if shape is not None and tuple(shape) != tuple(value.shape):
            return f"{key!r} has shape {tuple(shape)}, this model's has {tuple(value.shape)}"
    return None


class DropAdvertisements(logging.Filter):
    """Drops Lightning's "Tip: ... try installing ..." lines (advertisements of other packages, not information
    about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith(ADVERTISEMENT_PREFIX)


ADVERTISEMENT_PREFIX = "\N{ELECTRIC LIGHT BULB} Tip:"
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def run_lightning(args: Sequence[str] | None = None) -> DiffusionCLI:
    """LightningCLI over the TrainingModule subclasses (default DiffusionModule) and TextDataModule; returns
    the CLI (its .trainer, .model). Arguments given here are the command line: the process's own sys.argv (e.g.
    pytest's, when a test calls this) is not read."""
    for name in RANK_ZERO_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, DropAdvertisements) for f in log.filters):
            log.addFilter(DropAdvertisements())
    argv = sys.argv
    if args is not None:
        sys.argv = argv[:1]  # LightningCLI warns when given args while sys.argv holds others
    try:
        return DiffusionCLI(
            TrainingModule,
            TextDataModule,
            subclass_mode_model=True,
            args=None if args is None else list(args),
            trainer_defaults={"logger": default_loggers(), "default_root_dir": DEFAULT_ROOT},
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={
                "description": __doc__.split("\n\n")[0],
                "epilog": EPILOG,
                "formatter_class": HelpFormatter,
            },
        )
    finally:
        sys.argv = argv
