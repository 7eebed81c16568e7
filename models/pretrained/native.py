"""This project's own checkpoints: the one reader of their metadata, and the network they hold.

Two layouts hold a model trained here:
- a checkpoint file written by `lightning fit` (`last.ckpt`): a torch archive with `state_dict` (the training
  module's state: `network.*` the trained weights, `ema.*` their moving average) and, under CONFIG_KEY,
  {"vocab_size": V, "kind": "diffusion" | "autoregressive", "config": YAML of the run's `model` and `data`
  sections, "class_names": the classes of a model trained on labelled data ([] or absent: unconditional)}; with
  `optimizer_states` and `loops` besides when it can resume a fit;
- an exported directory (`lightning export`): `model.safetensors` (the EMA network's weights under its own
  key names) and `config.json` {"format": EXPORT_FORMAT, "kind", "vocab_size", "model", "data", "class_names"}.

`read_checkpoint` reads either into one typed record, `Checkpoint`, checking it once (one-line ValueErrors that
name the option and the file); the fit command, the training module and `NativeLayout` (the layout of
`models.from_pretrained` for these files) use it. `load_native` builds the network the `model` section names, with
the EMA weights, and attaches the forward process the section names (`network.process`, diffusion models) and a
`models.PretrainedInfo` (`network.pretrained`, layout "native"). Building follows the training module's own wiring
(training.module.DiffusionModule):
process = ForwardProcess(rate_matrix(V), schedule or LogLinear()), loss = loss(process), network =
network(loss.network_input_states()); an autoregressive model is network(V); with class names, num_classes = C is
passed too (training.base_module.TrainingModule.build_network).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

import ctmc
from models.pretrained.info import CheckpointError, PretrainedInfo
from models.pretrained.lightning import read_lightning_checkpoint
from models.pretrained.source import CheckpointSource

CONFIG_KEY = "ctmc_training"  # checkpoint entry: {"vocab_size": int, "kind": str, "config": YAML of model and data}
EXPORT_FORMAT = "ctmc-diffusion"  # config.json "format" of an exported directory
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
KINDS = ("diffusion", "autoregressive", "classifier")  # classifier: of noisy sequences (training.classifier)
DEFAULT_KIND = "diffusion"  # checkpoints written before the kind was stored hold diffusion models
AVERAGE_PREFIX = "ema."  # the module's EMA copy of the network
NETWORK_PREFIX = "network."  # the trained network itself
# The training modules' defaults for the keys that decide what is built and how it is evaluated
# (training.module.DiffusionModule and training.autoregressive.ARModule; tests/models/test_native.py checks that
# they agree). Checkpoints written by `lightning fit` store every key; these fill in a hand-written --config.
DIFFUSION_DEFAULTS: dict[str, Any] = {
    "network": "models.DiT",
    "rate_matrix": "ctmc.Absorbing",
    "schedule": None,
    "loss": "losses.ScoreEntropy",
    "val_time_samples": 8,
    "val_estimator": "auto",
    "packed_outputs": True,
    "seed": 0,
}
AUTOREGRESSIVE_DEFAULTS: dict[str, Any] = {"network": "models.ARTransformer"}
CLASSIFIER_DEFAULTS: dict[str, Any] = {"network": "models.NoisyClassifier", "rate_matrix": "ctmc.Absorbing",
                                       "schedule": None}  # training.classifier.ClassifierModule


def article(word: str) -> str:
    """ "an" before a vowel, else "a" (for messages that name a model kind)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def kind_config(kind: str) -> str:
    """The example config of a model kind, for error messages."""
    return {"autoregressive": "configs/ar.yaml", "classifier": "configs/classifier-genre.yaml"}.get(
        kind, "configs/sedd.yaml")


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint of this project holds, read and checked once (`read_checkpoint`).

    path: the file or exported directory. kind: "diffusion" or "autoregressive". vocab_size: the clean tokens V
    it was trained on (None when not stored). module_class: the `model` section's class_path (None when the
    section names none). model: the module's constructor arguments (the section's init_args). data: the `data`
    section (training.datamodule.TextDataModule's arguments). state_dict: the training module's state (every
    key; for an exported directory, the network's weights under AVERAGE_PREFIX). resumable: it holds the
    optimiser and loop state a resumed fit needs. has_config: the model and data sections were found.
    hyper_parameters: Lightning's saved hyper-parameters (the training modules save none). global_step: the
    optimiser steps taken when it was written (None for an exported directory). class_names: the classes of labelled
    training data, in class-id order (() for an unconditional model); the network reads C = len of them.
    """

    path: str
    kind: str
    vocab_size: int | None
    module_class: str | None
    model: dict[str, Any]
    data: dict[str, Any]
    state_dict: dict[str, Tensor] = field(repr=False)
    resumable: bool = False
    has_config: bool = True
    hyper_parameters: dict[str, Any] = field(default_factory=dict, repr=False)
    global_step: int | None = None
    class_names: tuple[str, ...] = ()

    @property
    def tokenizer_name(self) -> str | None:
        """The data section's tokenizer ("gpt2", "char"), None if the section names none."""
        value = self.data.get("tokenizer")
        return None if value is None else str(value)

    @property
    def seq_len(self) -> int | None:
        """The training block length (data.seq_len), None if the section names none."""
        value = self.data.get("seq_len")
        return None if value is None else int(value)

    def check_fits(self, kind: str, vocab_size: int, option: str = "--ckpt_path") -> None:
        """Raise ValueError (one line naming `option`) unless this checkpoint holds a model of `kind` trained on
        `vocab_size` clean tokens (a vocabulary that was not stored is not checked)."""
        if self.kind != kind:
            raise ValueError(
                f"{option}={self.path} holds {article(self.kind)} {self.kind} model, but the config builds "
                f"{article(kind)} {kind} model; use the config the checkpoint was trained with "
                f"({kind_config(self.kind)})"
            )
        if self.vocab_size is not None and self.vocab_size != vocab_size:
            raise ValueError(
                f"{option}={self.path} was trained with vocab_size {self.vocab_size}, but data.tokenizer gives "
                f"{vocab_size}; use the checkpoint's data.tokenizer (see its stored config)"
            )

    def network_weights(self, average: bool = True) -> dict[str, Tensor]:
        """The network's weights under its own key names: the moving average (EMA) or the trained weights."""
        prefix = AVERAGE_PREFIX if average else NETWORK_PREFIX
        weights = {key[len(prefix):]: value for key, value in self.state_dict.items() if key.startswith(prefix)}
        if not weights:
            raise ValueError(f"{self.path}: holds no {prefix}* weights; give a checkpoint written by `lightning fit`")
        return weights


def _sections(text: str | dict | None, where: str) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(module class_path, model init arguments, data section) of a stored config (YAML text or a mapping)."""
    loaded = yaml.safe_load(text) if isinstance(text, str) else text
    if not isinstance(loaded, dict):
        raise ValueError(f"{where}: must be a mapping with `model` and `data` sections, like configs/sedd.yaml")
    model = loaded.get("model") or {}
    data = loaded.get("data") or {}
    if not isinstance(model, dict) or not isinstance(data, dict):
        raise ValueError(f"{where}: its `model` and `data` sections must be mappings, like configs/sedd.yaml")
    module_class = None
    if "class_path" in model:  # the CLI's subclass form: class_path + init_args
        module_class = str(model["class_path"])
        model = model.get("init_args") or {}
    return module_class, dict(model), dict(data)


def record_of(loaded: dict[str, Any], path: str, option: str = "--ckpt_path") -> Checkpoint:
    """The `Checkpoint` record of a checkpoint dict already loaded (by torch.load, or by Lightning on resume)."""
    stored = loaded.get(CONFIG_KEY) or {}
    text = stored.get("config")
    module_class, model, data = _sections(text, f"{option} {path!r}") if text else (None, {}, {})
    kind = stored.get("kind", DEFAULT_KIND)
    if kind not in KINDS:
        raise ValueError(f"{option}: {path!r} holds an unknown model kind {kind!r}; give a checkpoint written by "
                         "`lightning fit`")
    return Checkpoint(
        path=path, kind=kind, vocab_size=stored.get("vocab_size"), module_class=module_class, model=model,
        data=data, state_dict=loaded.get("state_dict") or {}, resumable={"optimizer_states", "loops"} <= set(loaded),
        has_config=bool(text), hyper_parameters=loaded.get("hyper_parameters") or {},
        global_step=loaded.get("global_step"), class_names=tuple(stored.get("class_names") or ()),
    )


def is_exported_directory(path: str | Path) -> bool:
    """Whether `path` is a directory written by `lightning export` (config.json with format EXPORT_FORMAT)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (ValueError, AttributeError):
        return False


def _read_exported(path: Path, option: str) -> Checkpoint:
    from safetensors.torch import load_file  # the hubs' weight format

    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ValueError(f"{option}: {str(path)!r} has no {WEIGHTS_FILE}; export the checkpoint again")
    module_class, model, data = _sections(config, f"{path / CONFIG_FILE}")
    kind = config.get("kind", DEFAULT_KIND)
    weights = load_file(str(weights_path))
    return Checkpoint(
        path=str(path), kind=kind, vocab_size=config.get("vocab_size"), module_class=module_class, model=model,
        data=data, state_dict={AVERAGE_PREFIX + key: value for key, value in weights.items()},
        class_names=tuple(config.get("class_names") or ()),
    )


def read_checkpoint(path: str | Path, option: str = "--ckpt_path", config: str | Path | None = None) -> Checkpoint:
    """The `Checkpoint` record of a `lightning fit` checkpoint file or an exported directory at `path`.

    config: a YAML file whose `model` and `data` sections replace the stored ones (for a checkpoint written
    without them). Raises ValueError (one line naming `option` and the file) for a missing path, a directory that
    is neither an exported model nor a checkpoint, a file that is not a PyTorch archive, a damaged archive, one
    that holds no state_dict (read by models.pretrained.lightning: no pickled code runs), an unknown model kind and
    a config that is not a mapping.
    """
    path = Path(path)
    if path.is_dir():
        if is_exported_directory(path):
            record = _read_exported(path, option)
        else:
            found = sorted(path.glob("**/last.ckpt"))
            example = f", e.g. {str(found[-1])!r}" if found else ""
            raise ValueError(
                f"{option}: {str(path)!r} is a directory; give a checkpoint file in it{example}, or a directory of a "
                "released model (config.json beside its weights)"
            )
    elif not path.is_file():
        raise ValueError(f"{option}: {str(path)!r} does not exist; give a checkpoint written by `lightning fit`")
    else:
        try:
            loaded = read_lightning_checkpoint(path)
        except CheckpointError as error:
            raise ValueError(f"{option}: {error}") from None
        if CONFIG_KEY not in loaded and "state_dict" not in loaded:
            raise ValueError(
                f"{option}: {str(path)!r} holds no state_dict; give a checkpoint written by `lightning fit`"
            )
        record = record_of(loaded, str(path), option)
    if config is not None:
        config_path = Path(config)
        if not config_path.is_file():
            raise ValueError(f"--config: {str(config)!r} does not exist; give the YAML the checkpoint was trained with")
        module_class, model, data = _sections(config_path.read_text(encoding="utf-8"), f"--config {str(config)!r}")
        record = dataclasses.replace(record, module_class=module_class, model=model, data=data, has_config=True)
    return record


# ---------------------------------------------------------------------------------------------- building
def import_object(class_path: str, where: str) -> Any:
    """The object a dotted path names (`package.module.Name`), or a ValueError naming `where`."""
    module_name, _, name = str(class_path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"{where}: cannot import {class_path!r}; give an importable class path such as models.DiT"
        ) from None


def instantiate(spec: Any, *args: Any, where: str, **keywords: Any) -> Any:
    """Call what a stored config names: a class path string, or {"class_path": ..., "init_args": {...}} (the form
    LightningCLI writes), with *args first and `keywords` over the init_args. None stays None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"{where}: expected a class path or a class_path/init_args mapping, got {spec!r}")
    init_args = spec.get("init_args") or {}
    try:
        return import_object(spec["class_path"], where)(*args, **{**init_args, **keywords})
    except TypeError as error:
        raise ValueError(f"{where}: {spec['class_path']} does not take these arguments ({error})") from None


def build_network(checkpoint: Checkpoint) -> nn.Module:
    """The untrained network (and `network.process` for a diffusion model) that `checkpoint`'s config names."""
    if not checkpoint.has_config:
        raise ValueError(
            f"--ckpt_path: {checkpoint.path!r} stores no training config; pass the YAML it was trained with as --config"
        )
    vocab_size = checkpoint.vocab_size
    if vocab_size is None:
        raise ValueError(f"--ckpt_path: {checkpoint.path!r} stores no vocab_size; give a checkpoint of `lightning fit`")
    model = checkpoint.model
    classes = {"num_classes": len(checkpoint.class_names)} if checkpoint.class_names else {}
    if checkpoint.kind == "autoregressive":
        spec = model.get("network", AUTOREGRESSIVE_DEFAULTS["network"])
        return instantiate(spec, vocab_size, where="model.network", **classes)
    defaults = CLASSIFIER_DEFAULTS if checkpoint.kind == "classifier" else DIFFUSION_DEFAULTS
    parts = {key: model.get(key, default) for key, default in defaults.items()}
    rate_matrix = instantiate(parts["rate_matrix"], vocab_size, where="model.rate_matrix")
    schedule = instantiate(parts["schedule"], where="model.schedule") or ctmc.LogLinear()
    process = ctmc.ForwardProcess(rate_matrix, schedule)
    if checkpoint.kind == "classifier":  # a classifier of noisy sequences reads every state of the chain
        states = process.num_states
    else:
        states = instantiate(parts["loss"], process, where="model.loss").network_input_states()
    network = instantiate(parts["network"], states, where="model.network", **classes)
    network.process = process
    return network


def load_state(network: nn.Module, weights: dict[str, Tensor], where: str) -> None:
    """network.load_state_dict(weights) with one-line errors naming the first missing, unexpected or mis-shaped key."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    fix = "give the config the checkpoint was trained with"
    if missing:
        raise ValueError(f"{where}: the weights do not fit the network of the config: {len(missing)} missing, e.g. "
                         f"{missing[0]!r}; {fix}")
    if unexpected:
        raise ValueError(f"{where}: the weights do not fit the network of the config: {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[0]!r}; {fix}")
    for key, value in expected.items():
        if tuple(weights[key].shape) != tuple(value.shape):
            raise ValueError(f"{where}: the weights do not fit the network of the config: {key!r} has shape "
                             f"{tuple(weights[key].shape)}, the network's {tuple(value.shape)}; {fix}")
    network.load_state_dict(weights)


def load_native(path: str | Path | Checkpoint, device: str | torch.device = "cpu",
                config: str | Path | None = None) -> nn.Module:
    """The network of a `lightning fit` checkpoint or an exported directory, with its EMA weights, in eval mode.

    The network carries `network.process` (the ctmc.ForwardProcess of its config; diffusion models and classifiers
    of noisy sequences) and
    `network.pretrained` (a PretrainedInfo: layout "native", the tokenizer, seq_len, the loss's class path, and the
    run's `model` and `data` sections as its config).
    """
    checkpoint = path if isinstance(path, Checkpoint) else read_checkpoint(path, config=config)
    network = build_network(checkpoint)
    load_state(network, checkpoint.network_weights(), f"--ckpt_path {checkpoint.path!r}")
    diffusion = checkpoint.kind == "diffusion"
    loss = checkpoint.model.get("loss", DIFFUSION_DEFAULTS["loss"]) if diffusion else None
    loss_class = loss if isinstance(loss, str) or loss is None else loss.get("class_path")
    output, time_conditioned = "log_probs", checkpoint.kind == "classifier"
    if diffusion:
        kind = import_object(loss_class, "model.loss")
        output, time_conditioned = kind.output_kind, not kind.time_independent
    weights = Path(checkpoint.path) / WEIGHTS_FILE if Path(checkpoint.path).is_dir() else Path(checkpoint.path)
    network.pretrained = PretrainedInfo(
        layout="native", path=checkpoint.path, weights=str(weights), ema=True, vocab_size=checkpoint.vocab_size,
        seq_len=checkpoint.seq_len, tokenizer=checkpoint.tokenizer_name, output=output,
        time_conditioned=time_conditioned, loss=loss_class,
        config={"model": checkpoint.model, "data": checkpoint.data}, kind=checkpoint.kind,
        class_names=checkpoint.class_names,
    )
    return network.eval().to(device)


def export_checkpoint(checkpoint: Checkpoint, out: str | Path) -> Path:
    """Write `checkpoint`'s EMA network as an exported directory: out/model.safetensors (the network's own key names)
    and out/config.json {"format": EXPORT_FORMAT, "kind", "vocab_size", "model", "data"}, which `load_native` and
    models.from_pretrained read back to the same network.

    The directory is written beside its target as `<out>.partial` and renamed into place, so a reader never sees half
    of it. Raises ValueError naming --out when it exists and is not empty, or its parent does not exist.
    """
    from safetensors.torch import save_file  # the hubs' weight format

    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"--out: {str(target)!r} exists and is not an empty directory; give a new directory")
    if not target.parent.is_dir():
        raise ValueError(f"--out: the parent directory of {str(target)!r} does not exist; create it first")
    if not checkpoint.has_config:
        raise ValueError(f"--ckpt_path: {checkpoint.path!r} stores no training config; it cannot be exported")
    build_network(checkpoint)  # the config builds a network (a one-line error otherwise) before anything is written
    weights = {key: value.detach().contiguous().clone() for key, value in checkpoint.network_weights().items()}
    config = {
        "format": EXPORT_FORMAT, "kind": checkpoint.kind, "vocab_size": checkpoint.vocab_size,
        "model": {"class_path": checkpoint.module_class, "init_args": checkpoint.model} if checkpoint.module_class
        else checkpoint.model,
        "data": checkpoint.data, "class_names": list(checkpoint.class_names),
    }
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        for leftover in partial.iterdir():
            leftover.unlink()
    partial.mkdir(exist_ok=True)
    save_file(weights, str(partial / WEIGHTS_FILE))
    (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        target.rmdir()
    partial.rename(target)
    return target


class NativeLayout:
    """This project's own layouts for models.from_pretrained: a `lightning fit` checkpoint (a file holding
    CONFIG_KEY) or a directory written by `lightning export` (config.json with format EXPORT_FORMAT)."""

    name = "native"
    description = f"this project's: a `lightning fit` checkpoint, or {CONFIG_FILE} with format {EXPORT_FORMAT!r}"

    def matches(self, source: CheckpointSource) -> bool:
        """A file whose checkpoint dict holds CONFIG_KEY, or an exported directory."""
        if source.path.is_dir():
            return is_exported_directory(source.path)
        return CONFIG_KEY in (source.lightning_checkpoint or {})

    def record(self, source: CheckpointSource) -> Checkpoint:
        """The Checkpoint record of the source (a file is not read twice: its dict is the source's)."""
        if source.path.is_dir():
            return read_checkpoint(source.path)
        return record_of(source.lightning_checkpoint, str(source.path))

    def load(self, source: CheckpointSource, device: torch.device) -> nn.Module:
        """load_native on the source's record."""
        return load_native(self.record(source), device)
