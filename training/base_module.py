"""`TrainingModule`: what every objective shares in the one training path of `lightning fit`.

An objective (the diffusion losses in training/module.py `DiffusionModule`, the autoregressive next-token
cross-entropy in training/autoregressive.py `ARModule`) subclasses it and supplies the network, the
`training_step` (nats per token to minimise), the `validation_step` (per-sequence nats into `val_nats` /
`val_tokens`) and `generate` (the sampling hook of `SampleLogger` and `lightning sample`). Shared here:

- the optimiser: AdamW (fused where torch has a fused kernel for the parameters' device), a linear warm-up
  then cosine / linear / constant decay (training/lr_schedule.py), stepped every optimiser step;
- the exponential moving average (EMA) of the weights, updated after each optimiser step and used for
  validation and sampling (training/ema.py);
- logging of the training loss, learning rate and tokens per second;
- validation sums: bits/token = sum nats / sum tokens / ln 2 over all validation sequences (gathered by
  torchmetrics over batches and devices), its ratio-estimator standard error (evaluation.bounds.ratio_estimate),
  and the cross-entropy of a unigram model of the training blocks on the same blocks;
- class labels (`class_names`, linked from the data's labels in the CLI): the network is built with
  num_classes = C (`build_network`), batches are (tokens, labels), and training replaces each label by the null
  label C with probability `label_dropout` (models.drop_labels, seeded by (seed, step, rank)), so that one network
  is both conditional and unconditional (classifier-free guidance); validation sums the unconditional (null label)
  estimates beside the conditional ones, and logs the label's information, their paired difference, with its SE;
- checkpoint metadata under CONFIG_KEY: the vocabulary size, the model kind (`KIND`, so that a command that
  reads a checkpoint can say in one line that it holds another kind of model), the class names and the YAML of
  the run's model and data sections;
- the data checks (vocabulary and sequence length) and the replay of the training shuffle on resume.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import Tensor, nn

import losses
from ctmc.checks import check_int
from data import unigram_log_probs
from evaluation.bounds import ratio_estimate
from evaluation.restore import network_max_length
from evaluation.seeding import seeded_generator
from models.labels import drop_labels
from models.pretrained.native import CONFIG_KEY, record_of
from training.ema import frozen_copy, update_average
from training.lr_schedule import Decay, warmup_decay

EVAL_MODE_WARNING = r"Found \d+ module\(s\) in eval mode at the start of training"  # Lightning, at fit start
LABEL_DROPOUT_STREAM = 2  # seeds the label dropout of a step apart from its other noise (seed, step, rank, 2)
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")  # device types with torch's fused AdamW kernel (torch >= 2.4)


def fused_adamw_supported(parameters: list[Tensor]) -> bool:
    """Whether torch's fused AdamW takes these parameters: floating point, all on one device type that has
    the fused kernel (FUSED_ADAMW_DEVICES)."""
    return bool(parameters) and all(
        p.is_floating_point() and p.device.type in FUSED_ADAMW_DEVICES and p.device.type == parameters[0].device.type
        for p in parameters
    )


class TrainingModule(pl.LightningModule):
    """The shared part of the training path (module docstring); subclasses set KIND and call `set_network`.

    vocab_size: clean tokens V (linked from the data module in the CLI). lr, betas, eps, weight_decay: AdamW.
    warmup_steps, decay, min_lr_ratio: see lr_schedule.warmup_decay; decay runs until trainer.max_steps (or
    the estimated number of steps). ema_decay: the EMA of the weights used for validation and sampling (0
    disables averaging). seed: seeds the objective's noise, the validation noise and the logged samples.
    unigram_output_bias: at the start of `fit`, set the network's (and EMA's) output bias so that it starts as
    the unigram model of the training blocks (the network's `init_output_bias`; add-1/2 counts).
    class_names: the classes of labelled data (linked from data.class_names in the CLI; None or []: unlabelled);
    a subclass builds its network with num_classes = len(class_names) (`build_network`). label_dropout: in [0, 1],
    the probability that a training label is replaced by the null label (Ho & Salimans 2022 use 0.1 to 0.2).
    """

    KIND = ""  # the model kind written into checkpoints ("diffusion", "autoregressive")

    def __init__(
        self,
        vocab_size: int,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 2500,
        decay: Decay = "cosine",
        min_lr_ratio: float = 0.0,
        ema_decay: float = 0.9999,
        seed: int = 0,
        unigram_output_bias: bool = False,
        class_names: list[str] | None = None,
        label_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        # The EMA copy stays in eval mode by design (no dropout in validation and sampling); Lightning warns at
        # every fit start that modules are in eval mode. This is that one intended case (the filter is idempotent).
        warnings.filterwarnings("ignore", message=EVAL_MODE_WARNING, category=PossibleUserWarning)
        check_int("model.vocab_size", vocab_size, 1, "link it from the data")
        if isinstance(label_dropout, bool) or not isinstance(label_dropout, (int, float)) or not (
                0.0 <= label_dropout <= 1.0):
            raise ValueError(f"model.label_dropout must lie in [0, 1], got {label_dropout!r}; 0.1 is typical")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"model.ema_decay must lie in [0, 1), got {ema_decay!r}; SEDD uses 0.9999")
        if not lr > 0.0:
            raise ValueError(f"model.lr must be > 0, got {lr!r}")
        check_int("model.warmup_steps", warmup_steps, 0)
        if decay not in ("cosine", "linear", "constant"):
            raise ValueError(f"model.decay must be 'cosine', 'linear' or 'constant', got {decay!r}")
        self.vocab_size = vocab_size
        self.optimizer_options = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.schedule_options = {"warmup_steps": warmup_steps, "decay": decay, "min_ratio": min_lr_ratio}
        self.ema_decay = ema_decay
        self.seed = seed
        self.unigram_output_bias = unigram_output_bias
        self.class_names: tuple[str, ...] = tuple(str(name) for name in class_names or ())
        self.label_dropout = float(label_dropout)
        self.val_null_nats = torchmetrics.CatMetric().set_dtype(torch.float64)  # unconditional n_i (labelled data)
        self.val_nats = torchmetrics.CatMetric().set_dtype(torch.float64)  # per-sequence estimates n_i
        self.val_tokens = torchmetrics.CatMetric().set_dtype(torch.float64)  # their token counts L_i
        self.val_unigram_nats = torchmetrics.SumMetric().set_dtype(torch.float64)
        self._unigram: Tensor | None = None  # (V,) log-probs of the training blocks' unigram model
        self.validation_result: dict[str, float] = {}  # the last validation's float64 values
        self.run_config: str | None = None  # YAML of the model and data config, set by the CLI
        self.initialised_from: str | None = None  # the checkpoint whose weights `initialise_from` copied
        self._batch_start = 0.0

    @property
    def num_classes(self) -> int:
        """C, the number of classes of the labels the network reads (0: unconditional); C is the null label."""
        return len(self.class_names)

    def build_network(self, network: Callable[..., nn.Module], states: int) -> nn.Module:
        """network(states), with num_classes = C for labelled data; ValueError (one line) when it takes no labels."""
        if not self.num_classes:
            return network(states)
        try:
            return network(states, num_classes=self.num_classes)
        except TypeError as error:
            if "num_classes" not in str(error):
                raise
            candidates = [network, *getattr(network, "args", ())]  # jsonargparse passes a partial over the class
            name = next((item.__name__ for item in candidates if isinstance(item, type)), type(network).__name__)
            raise ValueError(
                f"data.labels gives {self.num_classes} classes, but model.network ({name}) takes no num_classes; "
                "use models.DiT, models.RADDDenoiser or models.ARTransformer, or set data.labels: null"
            ) from None

    def set_network(self, network: nn.Module) -> None:
        """Install the trained network and its EMA copy (call once, in the subclass's constructor)."""
        self.network = network
        self.ema = frozen_copy(self.network)
        if self.unigram_output_bias and not hasattr(self.network, "init_output_bias"):
            raise ValueError(
                f"model.unigram_output_bias needs a network with init_output_bias (models.DiT, "
                f"models.RADDDenoiser), got {type(self.network).__name__}; set it to false"
            )

    # ----------------------------------------------------------------------------------------- checks
    def check_data(self, vocab_size: int, seq_len: int) -> None:
        """Raise ValueError (one line, naming the key to change) unless the data fits this model."""
        if vocab_size != self.vocab_size:
            raise ValueError(
                f"the data's tokenizer has vocab_size {vocab_size} but the model was built for {self.vocab_size}; "
                "use the tokenizer the model was trained with (data.tokenizer)"
            )
        max_length = network_max_length(self.network)
        if max_length is not None and seq_len > max_length:
            raise ValueError(
                f"data.seq_len={seq_len} is larger than the network's max_length={max_length}; "
                f"lower data.seq_len or set model.network.init_args.max_length >= {seq_len}"
            )

    @property
    def max_length(self) -> int | None:
        """The longest sequence the network accepts (None if it declares none)."""
        return network_max_length(self.network)

    def check_labels(self, class_names: list[str] | tuple[str, ...]) -> None:
        """Raise ValueError (one line) unless the data's classes are the ones the network was built for."""
        if tuple(class_names) != self.class_names:
            raise ValueError(
                f"the data's labels are {list(class_names)} but the model was built for {list(self.class_names)}; "
                "use the data.labels the model was trained with"
            )

    def split_batch(self, batch: Tensor | tuple[Tensor, Tensor] | list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """(tokens (B, L), labels (B,) or None) of a batch of blocks or of labelled blocks (data.LabelledBlocks)."""
        if isinstance(batch, Tensor):
            return batch, None
        tokens, labels = batch
        if not self.num_classes:
            raise ValueError("the batches hold labels but the model was built without classes; link "
                             "data.class_names to model.class_names (the CLI does) or set data.labels: null")
        return tokens, labels

    def dropped_labels(self, labels: Tensor | None, step: int) -> Tensor | None:
        """Training labels after label dropout (each replaced by the null label C with probability label_dropout), from
        a generator seeded by (seed, step, rank): the same on resume and whatever the order of the batch's rows."""
        if labels is None:
            return None
        generator = seeded_generator(labels.device, self.seed, step, self.global_rank, LABEL_DROPOUT_STREAM)
        return drop_labels(labels, self.num_classes, self.label_dropout, generator)

    def null_labels(self, batch_size: int, device: torch.device) -> Tensor:
        """(batch_size,) long: the null label C for every sequence (the unconditional model)."""
        return torch.full((batch_size,), self.num_classes, dtype=torch.long, device=device)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "vocab_size"):
            self.check_data(datamodule.vocab_size, datamodule.hparams.seq_len)
        if datamodule is not None and hasattr(datamodule, "class_names"):
            self.check_labels(datamodule.class_names)
        train_dataset = getattr(datamodule, "train_dataset", None)
        if stage != "predict" and train_dataset is not None and self._unigram is None:
            self._unigram = unigram_log_probs(train_dataset, self.vocab_size)
        if stage == "fit" and self.unigram_output_bias and self.initialised_from is None:  # a resume overwrites it
            if self._unigram is None:
                raise ValueError("model.unigram_output_bias needs a data module with a train_dataset")
            for network in (self.network, self.ema):
                network.init_output_bias(self._unigram.to(self.device, next(network.parameters()).dtype))

    @torch.no_grad()
    def initialise_from(self, network: nn.Module, source: str) -> None:
        """Start from the weights of `network` (models.from_pretrained of `source`: a released or exported model) to
        fine-tune it: copied into the network and its EMA copy, the unigram output bias then left alone.

        Raises ValueError (one line naming --init_from, the file and the key) unless `network` is of the class the
        config builds, reads as many states, and has every weight with the same shape.
        """
        own = self.network
        if type(network) is not type(own):
            raise ValueError(
                f"--init_from {source}: holds a {type(network).__name__}, the config builds a {type(own).__name__}; "
                f"set model.network to {type(network).__module__.split('.')[0]}.{type(network).__name__} with the "
                "checkpoint's sizes"
            )
        process = getattr(network, "process", None)
        own_process = getattr(self, "process", None)
        if process is not None and own_process is not None and process.num_states != own_process.num_states:
            raise ValueError(
                f"--init_from {source}: its chain has {process.num_states} states, the config's "
                f"{own_process.num_states}; use the checkpoint's tokenizer (data.tokenizer) and chain"
            )
        weights, expected = network.state_dict(), own.state_dict()
        for key, value in expected.items():
            if key not in weights:
                raise ValueError(f"--init_from {source}: the weight {key!r} of the config's network is missing; "
                                 "give the config the checkpoint's sizes")
            if tuple(weights[key].shape) != tuple(value.shape):
                raise ValueError(f"--init_from {source}: {key!r} has shape {tuple(weights[key].shape)}, the config's "
                                 f"network {tuple(value.shape)}; give the config the checkpoint's sizes")
        unexpected = [key for key in weights if key not in expected]
        if unexpected:
            raise ValueError(f"--init_from {source}: {len(unexpected)} weight(s) the config's network lacks, e.g. "
                             f"{unexpected[0]!r}; give the config the checkpoint's sizes")
        for target in (own, self.ema):
            target.load_state_dict({key: value.to(expected[key].dtype) for key, value in weights.items()})
        self.initialised_from = source

    def train(self, mode: bool = True) -> TrainingModule:
        """nn.Module.train, except that the EMA copy always stays in eval mode (no dropout in sampling)."""
        super().train(mode)
        self.ema.eval()
        return self

    def on_train_start(self) -> None:
        """After a resume at epoch e > 0, replay the training shuffle to where an uninterrupted run has it.

        Lightning restores neither the sampler's generator nor its position. The data module seeds the
        shuffle generator with its `seed` once; an uninterrupted run has drawn e epochs' permutations from it
        at the start of epoch e, so the generator is reseeded and e epochs of the sampler are drawn and
        discarded. (Resuming mid-epoch is not exact; Lightning warns about it.)
        """
        epochs = self.current_epoch
        loader = self.trainer.train_dataloader
        sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None) or getattr(loader, "sampler", None)
        generator = getattr(sampler, "generator", None)
        if epochs == 0 or not isinstance(generator, torch.Generator):
            return
        generator.manual_seed(getattr(getattr(self.trainer, "datamodule", None), "seed", 0))
        for _ in range(epochs):
            for _ in sampler:
                pass

    def on_train_batch_start(self, batch: Tensor, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._batch_start
        tokens = self.split_batch(batch)[0].numel()
        self.log("train/tokens_per_s", tokens * self.trainer.world_size / max(elapsed, 1e-9))
        self.log_step()

    def log_step(self) -> None:
        """Label the row being logged with the optimiser steps taken (global_step; Lightning would label it with
        the index of the last batch, one less): `step` is the key every Lightning logger reads as the row's step."""
        self.log("step", float(self.global_step), sync_dist=False)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the EMA update (before any callback's on_train_batch_end checkpoints)."""
        super().optimizer_step(*args, **kwargs)
        update_average(self.ema, self.network, self.ema_decay)

    def configure_optimizers(self) -> dict[str, Any]:
        parameters = list(self.network.parameters())
        fused = fused_adamw_supported(parameters)  # torch's fused kernel: one launch per step, same update
        optimizer = torch.optim.AdamW(parameters, **self.optimizer_options, fused=fused)
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else int(self.trainer.estimated_stepping_batches)
        factor = partial(warmup_decay, total_steps=total, **self.schedule_options)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_validation_epoch_end(self) -> None:
        """Log bits/token with its SE (ratio estimator over sequences) and the unigram reference."""
        nats, tokens = self.val_nats.compute(), self.val_tokens.compute()  # gathered over batches and devices
        unigram = self.val_unigram_nats.compute()
        null = self.val_null_nats.compute() if self.val_null_nats.update_count else None
        for metric in (self.val_nats, self.val_tokens, self.val_unigram_nats, self.val_null_nats):
            metric.reset()
        if not isinstance(tokens, Tensor) or tokens.numel() == 0:
            return
        estimate = ratio_estimate(nats.reshape(-1), tokens.reshape(-1))
        total_nats, total_tokens = nats.sum(), tokens.sum()
        ln2 = torch.log(torch.tensor(2.0, dtype=torch.float64))
        result = {
            "nats": float(total_nats),
            "tokens": float(total_tokens),
            "bits_per_token": float(losses.bits_per_token(total_nats, total_tokens)),
            "perplexity_bound": float(losses.perplexity_bound(total_nats, total_tokens)),
        }
        if estimate.standard_error is not None:
            result["bits_per_token_se"] = estimate.standard_error / float(ln2)
        if self._unigram is not None:
            result["unigram_bits_per_token"] = float(losses.bits_per_token(unigram, total_tokens))
        if isinstance(null, Tensor) and null.numel() == nats.numel():
            result.update(label_information(nats.reshape(-1), null.reshape(-1), tokens.reshape(-1)))
        self.validation_result = result
        self.log_step()
        self.log("val/nats_per_token", total_nats / total_tokens, sync_dist=False)
        self.log("val/bits_per_token", result["bits_per_token"], prog_bar=True, sync_dist=False)
        self.log("val/perplexity_bound", result["perplexity_bound"], sync_dist=False)
        for key in ("bits_per_token_se", "unigram_bits_per_token", *LABEL_KEYS):
            if key in result:
                self.log(f"val/{key}", result[key], sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = {"vocab_size": self.vocab_size, "kind": self.KIND, "config": self.run_config,
                                  "class_names": list(self.class_names)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model kind or vocabulary (models.pretrained.native.Checkpoint.check_fits)."""
        record_of(checkpoint, "the checkpoint", "ckpt_path").check_fits(self.KIND, self.vocab_size, "ckpt_path")

    on_test_epoch_end = on_validation_epoch_end


LABEL_KEYS = ("null_bits_per_token", "null_bits_per_token_se", "label_bits_per_token", "label_bits_per_token_se")


def label_information(conditional: Tensor, null: Tensor, tokens: Tensor) -> dict[str, float]:
    """The unconditional (null label) bits/token with its SE, and the label's information: the paired difference
    null - conditional in bits/token with its SE (ratio estimator of the per-sequence differences, which share their
    noise, so the spread between blocks cancels). conditional, null, tokens: (N,) per-sequence nats and lengths."""
    ln2 = math.log(2.0)
    null_estimate = ratio_estimate(null, tokens)
    difference = ratio_estimate(null - conditional, tokens)
    result = {"null_bits_per_token": null_estimate.value / ln2, "label_bits_per_token": difference.value / ln2}
    if null_estimate.standard_error is not None and difference.standard_error is not None:
        result["null_bits_per_token_se"] = null_estimate.standard_error / ln2
        result["label_bits_per_token_se"] = difference.standard_error / ln2
    return result
