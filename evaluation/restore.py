"""A trained model, restored for inference without Lightning: `TrainedModel` and `load_trained`.

`load_trained(path)` loads a checkpoint of `lightning fit`, a directory of `lightning export` or a released SEDD,
RADD or MDLM model (models.from_pretrained), and adds the loss its config names, the tokenizer and the block length
it was trained on. Everything the commands and benchmarks compute (bounds, fixed-order likelihoods, samples, the AR
judge) takes this record, so that the same code evaluates a model whatever wrote it. The training module
(training.module.DiffusionModule) calls the same functions (evaluation.bounds, samplers.network_model) on its own
objects, so `lightning evaluate` and `lightning fit`'s validation compute the same numbers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import ctmc
import losses
import samplers
from data import TextBlocks, Tokenizer, tokenizer_from_name
from evaluation.bounds import prior_nats, sequence_negative_elbo
from models.pretrained import CheckpointError, detect_layout
from models.pretrained.native import (
    DIFFUSION_DEFAULTS,
    NativeLayout,
    article,
    instantiate,
    load_native,
    read_checkpoint,
)
from models.pretrained.source import CheckpointSource

DATA_DEFAULTS = inspect.signature(TextBlocks).parameters  # the data defaults, for a config that omits a key


@dataclass
class TrainedModel:
    """A model restored for inference, with what it was trained on.

    network: the EMA network in eval mode. kind: "diffusion", "autoregressive" or "classifier" (of noisy sequences,
    for predictor guidance: network(x_t, sigma-bar) -> (B, C) log p(c | x_t)). tokenizer, tokenizer_name: the
    data's tokenizer ("gpt2", "char"). seq_len: the training block length. source: the path it was read from.
    process, loss: the forward process (diffusion models and classifiers) and the training loss (diffusion models).
    estimator: the validation estimator (losses.MaskedCountEstimator on the absorbing chain with val_estimator
    auto/masked_count, else None: stratified times). packed: ask the network only for the outputs the loss
    reads. time_samples: the draws per sequence of the run's validation (1 for an exact likelihood). seed: the
    run's noise seed. data: the training run's `data` section ({} when unknown). class_names: the classes a
    conditional network reads (labels 0..C-1, C = len(class_names) the null label); () for an unconditional model.
    """

    network: nn.Module
    kind: str
    tokenizer: Tokenizer
    tokenizer_name: str
    seq_len: int
    source: str
    process: ctmc.ForwardProcess | None = None
    loss: losses.DiffusionLoss | None = None
    estimator: losses.MaskedCountEstimator | None = None
    packed: bool = True
    time_samples: int = 1
    seed: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    _prior: losses.PriorKL | None = field(default=None, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        """The device of the network's parameters."""
        return next(self.network.parameters()).device

    @property
    def vocab_size(self) -> int:
        """The clean tokens V."""
        return self.tokenizer.vocab_size

    @property
    def max_length(self) -> int | None:
        """The longest sequence the network accepts (its or its trunk's `max_length`), None if it declares none."""
        return network_max_length(self.network)

    @property
    def block_size(self) -> int | None:
        """The block size of a block diffusion network (a samplers.BlockModel, e.g. models.BlockDenoiser), else None."""
        return self.network.block_size if isinstance(self.network, samplers.BlockModel) else None

    def require_kind(self, kind: str, what: str) -> None:
        """Raise ValueError (one line) unless the model is of `kind`; `what` names the option that needs it."""
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

    # ------------------------------------------------------------------------------------------ models
    def sampling_model(self) -> samplers.ConcreteScore | samplers.Denoiser:
        """The network wrapped for the samplers (samplers.network_model with the loss's output kind)."""
        self.require_kind("diffusion", "sampling with a reverse-time sampler")
        return samplers.network_model(self.network, self.loss.output_kind)

    @property
    def num_classes(self) -> int:
        """C, the classes of a conditional network (0: unconditional); C is its null label."""
        return len(self.class_names)

    @torch.no_grad()
    def negative_elbo_draws(self, x0: Tensor, num_draws: int, seed: int, label: Tensor | None = None) -> Tensor:
        """(B, K) negative-ELBO draws (nats) of x0 (B, L), seeded by (seed, sequence content)
        (evaluation.bounds.sequence_negative_elbo of loss.bound() with the validation estimator, as the training
        module's validation); the prior term is not included. label: (B,) long classes of a conditional network
        (None: the null label)."""
        network = self.network if label is None else partial(self.network, label=label.repeat_interleave(num_draws))
        return sequence_negative_elbo(
            self.loss, network, x0, num_draws, seed, estimator=self.estimator, packed=self.packed
        )

    def prior_nats(self, x0: Tensor) -> Tensor:
        """(B,) float64 prior term KL(p_{1|0}(. | x0) || pi^L) per sequence (evaluation.bounds.prior_nats)."""
        if self._prior is None and not self.loss.includes_prior:
            self._prior = losses.PriorKL(self.process)
        return prior_nats(self.loss, self._prior, x0)

    @torch.no_grad()
    def sequence_nats(self, x0: Tensor, label: Tensor | None = None) -> Tensor:
        """(B,) float64 exact -log p_theta(x0[ | label]) of an autoregressive model, x0: (B, L) long, label: (B,) long
        classes of a conditional network (None: unconditional)."""
        self.require_kind("autoregressive", "an exact likelihood")
        return (self.network.nll(x0) if label is None else self.network.nll(x0, label=label)).double()

    @torch.no_grad()
    def generate_ancestral(
        self, batch_size: int, length: int, generator: torch.Generator | None = None, prefix: Tensor | None = None,
        decoding: samplers.Decoding | None = None,
    ) -> samplers.SamplingResult:
        """Ancestral samples (batch_size, length) of an autoregressive model (samplers.ancestral_sample), any length:
        the network reads the last seq_len - 1 tokens (the longest prefix a training sequence gives it), so that a
        text past seq_len slides its context instead of reading positions it was never trained on."""
        self.require_kind("autoregressive", "ancestral sampling")
        return samplers.ancestral_sample(
            self.network.next_token_log_probs, batch_size, length, prefix=prefix, decoding=decoding,
            generator=generator, device=self.device, context=max(self.seq_len - 1, 1),
        )


def network_max_length(network: nn.Module) -> int | None:
    """The longest sequence `network` accepts (its or its trunk's `max_length`), None if it declares none."""
    for owner in (network, getattr(network, "trunk", None)):
        value = getattr(owner, "max_length", None)
        if isinstance(value, int):
            return value
    return None


def check_vocabulary(vocab_size: int | None, tokenizer_name: str, path: Path) -> Tokenizer:
    """The tokenizer named `tokenizer_name`, after checking that it has the model's vocab_size (None: unknown)."""
    try:
        tokenizer = tokenizer_from_name(tokenizer_name)
    except ValueError as error:
        raise ValueError(f"--ckpt_path: {str(path)!r}: data.tokenizer: {error}") from None
    if vocab_size is not None and vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"--ckpt_path: {str(path)!r} was trained with vocab_size {vocab_size}, but its tokenizer "
            f"{tokenizer_name!r} has {tokenizer.vocab_size}; pass the config the checkpoint was trained with"
        )
    return tokenizer


def load_trained(
    ckpt_path: str | Path, config: str | Path | None = None, device: str | torch.device = "cpu"
) -> TrainedModel:
    """The model at `ckpt_path` (models.from_pretrained: a `lightning fit` checkpoint, an exported directory, a
    released SEDD, RADD or MDLM checkpoint), ready for inference on `device`.

    config: a YAML file whose `model` and `data` sections replace the ones stored in a checkpoint of this project.
    Raises ValueError (one line, naming the option to change) for a missing or unreadable file, a config that does
    not build, weights that do not fit, or a vocabulary that is not the tokenizer's.
    """
    path = Path(ckpt_path)
    try:
        record = None
        if config is not None:
            record = read_checkpoint(path, config=config)
        else:
            source = CheckpointSource(path)
            layout = detect_layout(source)
            if isinstance(layout, NativeLayout):
                record = layout.record(source)
            else:
                network = layout.load(source, torch.device(device))
        if record is not None:
            check_vocabulary(record.vocab_size, record.tokenizer_name or DATA_DEFAULTS["tokenizer"].default, path)
            network = load_native(record, device)
    except (CheckpointError, FileNotFoundError) as error:  # the library's own messages name the file, not the option
        raise ValueError(f"--ckpt_path: {error}") from None
    info = network.pretrained
    settings = dict(info.config.get("model", {})) if info.layout == "native" else {}
    data = dict(info.config.get("data", {})) if info.layout == "native" else {}
    tokenizer_name = info.tokenizer or (DATA_DEFAULTS["tokenizer"].default if info.layout == "native" else None)
    if tokenizer_name is None:
        raise ValueError(f"--ckpt_path: {str(path)!r} does not say which tokenizer its data used; this toolkit reads "
                         "GPT-2 BPE (gpt2) and byte (char) models")
    tokenizer = check_vocabulary(info.vocab_size, tokenizer_name, path)
    seq_len = info.seq_len or DATA_DEFAULTS["seq_len"].default
    trained = TrainedModel(
        network=network, kind=info.kind, tokenizer=tokenizer, tokenizer_name=tokenizer_name, seq_len=seq_len,
        source=str(ckpt_path), data=data, class_names=tuple(getattr(info, "class_names", ())),
    )
    if info.kind == "classifier":
        trained.process = network.process
    if info.kind == "diffusion":
        trained.process = network.process
        loss = settings.get("loss", info.loss)
        trained.loss = instantiate(loss, network.process, where="model.loss")
        choice = settings.get("val_estimator", DIFFUSION_DEFAULTS["val_estimator"])
        trained.estimator = losses.estimator_for(choice, network.process, "val_estimator")
        trained.packed = bool(settings.get("packed_outputs", DIFFUSION_DEFAULTS["packed_outputs"]))
        trained.time_samples = int(settings.get("val_time_samples", DIFFUSION_DEFAULTS["val_time_samples"]))
        trained.seed = int(settings.get("seed", DIFFUSION_DEFAULTS["seed"]))
    return trained
