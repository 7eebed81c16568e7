"""Rebuild a trained module (`DiffusionModule`, `ARModule`) from a checkpoint, for `sample` and `evaluate`.

A checkpoint written by `lightning fit` holds the weights (network and EMA) in `state_dict` and, under
`training.module.CONFIG_KEY`, the vocabulary size, the model kind (which module class to build) and the YAML
of the run's `model` and `data` sections. The module is rebuilt from that YAML through the constructor
signatures (jsonargparse, as LightningCLI does, so `class_path`/`init_args` mean the same here), or from the
`model`/`data` sections of a config file given instead. The checkpoint is read with
`torch.load(..., weights_only=True)`: no pickled code runs.

`CommandParser` is the argument parser of those commands: every bad option or value ends the command with
one line on stderr, `error: <what is wrong and what to change>`, and exit status 2, as the LightningCLI
subcommands do (training/cli.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
import yaml
from jsonargparse import ArgumentParser

from training.autoregressive import ARModule
from training.base_module import CONFIG_KEY, TrainingModule, article
from training.data import TextDataModule
from training.module import DiffusionModule
from training.tokenizers import Tokenizer, tokenizer_from_name


@dataclass
class TrainedModel:
    """A module restored for inference (eval mode, on `device`), with what it was trained on.

    module: the DiffusionModule or ARModule (its `ema` holds the averaged weights); kind: its KIND
    ("diffusion", "autoregressive"); tokenizer: the data's tokenizer;
    tokenizer_name: "gpt2" or "char"; seq_len: the training block length; max_length: the longest sequence
    the network accepts (None if it declares none).
    """

    module: TrainingModule
    tokenizer: Tokenizer
    tokenizer_name: str
    seq_len: int
    max_length: int | None

    @property
    def kind(self) -> str:
        """The model kind: "diffusion" or "autoregressive"."""
        return self.module.KIND

    def require_kind(self, kind: str, what: str) -> None:
        """Raise ValueError (one line) unless the module is of `kind`; `what` names the option that needs it."""
        if self.kind != kind:
            raise ValueError(
                f"{what} needs {article(kind)} {kind} checkpoint, but it holds {article(self.kind)} {self.kind} model"
            )

    def check_length(self, length: int, option: str) -> None:
        """Raise ValueError naming `option` unless 1 <= length <= max_length."""
        if length < 1:
            raise ValueError(f"{option} must be >= 1, got {length}")
        if self.max_length is not None and length > self.max_length:
            raise ValueError(
                f"{option}={length} is larger than the network's max_length={self.max_length}; "
                f"use {option} <= {self.max_length}"
            )


MODULE_CLASSES: dict[str, type[TrainingModule]] = {"diffusion": DiffusionModule, "autoregressive": ARModule}


def _config_parser(module_class: type[TrainingModule]) -> ArgumentParser:
    """Parser of the `model` (without vocab_size) and `data` sections, with the constructors' defaults."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(module_class, "model", skip={"vocab_size"}, instantiate=False)
    parser.add_class_arguments(TextDataModule, "data", instantiate=False)
    return parser


def read_checkpoint(ckpt_path: str | Path, option: str = "--ckpt_path") -> dict[str, Any]:
    """The dict stored in the checkpoint file at `ckpt_path`, read with torch.load(weights_only=True).

    Raises ValueError (one line naming `option`) for a missing path, a directory, and a file that is not a
    checkpoint written by `lightning fit`: truncated, a text file, a pickle of other objects, a dict without
    a state_dict. torch.load raises many exception types for bad input (KeyError on a text file, IndexError,
    EOFError, RuntimeError on a truncated zip, UnpicklingError on foreign objects), so all are caught here.
    """
    path = Path(ckpt_path)
    if path.is_dir():
        found = sorted(path.glob("**/last.ckpt"))
        example = f", e.g. {str(found[-1])!r}" if found else ""
        raise ValueError(f"{option}: {str(path)!r} is a directory; give a checkpoint file in it{example}")
    if not path.is_file():
        raise ValueError(f"{option}: {str(path)!r} does not exist; give a checkpoint written by `lightning fit`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load has no single error type (see the docstring)
        text = " ".join(str(error).split())
        reason = f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__
        raise ValueError(
            f"{option}: {str(path)!r} is not a readable checkpoint ({reason}); give a checkpoint written by "
            "`lightning fit` (a file cut short by a crash or a copy is not readable)"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(
            f"{option}: {str(path)!r} holds no state_dict; give a checkpoint written by `lightning fit`"
        )
    return checkpoint


def _sections(checkpoint: dict[str, Any], path: Path, config: str | None) -> dict[str, Any]:
    """The `model` and `data` sections: from the config file if given, else those stored in the checkpoint."""
    if config is not None:
        config_path = Path(config)
        if not config_path.is_file():
            raise ValueError(f"config: {config!r} does not exist; give the YAML the checkpoint was trained with")
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    else:
        stored = checkpoint.get(CONFIG_KEY, {}).get("config")
        if not stored:
            raise ValueError(
                f"ckpt_path: {str(path)!r} stores no training config; pass the YAML it was trained with as --config"
            )
        loaded = yaml.safe_load(stored)
    if not isinstance(loaded, dict):
        raise ValueError("config: must be a YAML mapping with `model` and `data` sections, like configs/sedd.yaml")
    return {key: loaded.get(key) or {} for key in ("model", "data")}


def load_trained(ckpt_path: str | Path, config: str | None = None, device: str | torch.device = "cpu") -> TrainedModel:
    """The module of `ckpt_path` with its weights (EMA included), in eval mode on `device`.

    config: a YAML file whose `model` and `data` sections replace the ones stored in the checkpoint (for a
    checkpoint written without them). Raises ValueError (one line, naming the option to change) for a
    missing or unreadable file, a config that does not parse, or weights that do not fit the rebuilt module.
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    sections = _sections(checkpoint, path, config)
    kind = checkpoint.get(CONFIG_KEY, {}).get("kind", "diffusion")  # written before kinds were stored: diffusion
    if kind not in MODULE_CLASSES:
        raise ValueError(f"ckpt_path: unknown model kind {kind!r}; give a checkpoint written by `lightning fit`")
    module_class = MODULE_CLASSES[kind]
    model = sections["model"]
    if isinstance(model, dict) and "class_path" in model:  # the CLI's subclass form: class_path + init_args
        named = str(model["class_path"]).rpartition(".")[2]
        if named != module_class.__name__:
            raise ValueError(
                f"config: model.class_path {model['class_path']!r} does not match the checkpoint's {kind} model "
                f"({module_class.__name__}); pass the config the checkpoint was trained with"
            )
        sections["model"] = model.get("init_args") or {}
    sections["model"].pop("vocab_size", None)
    parser = _config_parser(module_class)
    try:
        namespace = parser.parse_object(sections)
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        built = instantiate(namespace)
    except Exception as error:  # jsonargparse raises its own ArgumentError / TypeError subclasses
        message = " ".join(str(error).split())
        raise ValueError(f"config: the checkpoint's model/data config does not parse ({message})") from None
    tokenizer = tokenizer_from_name(built.data.tokenizer)
    vocab_size = checkpoint.get(CONFIG_KEY, {}).get("vocab_size", tokenizer.vocab_size)
    if vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"ckpt_path: trained with vocab_size {vocab_size}, but data.tokenizer={built.data.tokenizer!r} has "
            f"{tokenizer.vocab_size}; pass the config the checkpoint was trained with"
        )
    module = module_class(vocab_size=vocab_size, **vars(built.model))
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(
            f"ckpt_path: the weights do not fit the model built from the config ({first}); "
            "pass the config the checkpoint was trained with as --config"
        ) from None
    module.eval().to(device)
    return TrainedModel(module, tokenizer, built.data.tokenizer, built.data.seq_len, module.max_length)


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
