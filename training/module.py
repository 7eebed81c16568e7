"""`DiffusionModule`: the LightningModule that trains a network on a CTMC discrete diffusion loss.

It wires objects together: a rate matrix (built from the vocabulary size), a noise schedule, the
`ctmc.ForwardProcess` they make, a loss built from the process (`losses.DiffusionLoss`), a network built from
the number of states it reads, and optionally a sampler for periodic samples. One training step is

    t ~ loss.sample_time(B),  x_t ~ P(0, t)[x_0, :],  nats = loss(network(x_t, sigma-bar(t)), x_0, x_t, t)

and the optimiser minimises mean(nats) / L, nats per token. On the absorbing chain the masked-count
estimator (losses.MaskedCountEstimator, `train_estimator` / `val_estimator`) replaces t ~ sample_time by
importance-sampled (t, x_t) with the same expectation and bounded terms: nats = weight * loss(...).
Validation estimates the negative ELBO with an exponential moving average (EMA) of the weights and
`val_time_samples` stratified draws per sequence (training/elbo.py). The per-sequence estimates are
gathered with torchmetrics (whatever the batching and the number of devices) into bits/token = sum nats /
sum tokens / ln 2 and its standard error (training.elbo.ratio_estimate), beside the cross-entropy of a
unigram model of the training blocks on the same validation blocks.

Randomness: the noise of a sequence at training batch k on rank r comes from generators seeded by
(seed, k, r, hash of the sequence) (training/elbo.py seeded_noise), so it does not depend on the order of
the rows in the batch, and the
training shuffle is replayed to epoch e on resume, so that a run resumed from a checkpoint written at the
end of an epoch's last batch (ModelCheckpoint every_n_train_steps) continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import Tensor, nn

import ctmc
import losses
import models
import samplers
from training.elbo import ratio_estimate, seeded_count_noise, seeded_noise, sequence_negative_elbo
from training.ema import frozen_copy, update_average
from training.lr_schedule import Decay, warmup_decay

CONFIG_KEY = "ctmc_training"  # checkpoint entry: {"vocab_size": int, "config": YAML of model and data}
ESTIMATORS = ("auto", "time", "masked_count")
UNIGRAM_PSEUDO_COUNT = 0.5  # add-1/2 (Krichevsky-Trofimov) smoothing of the unigram reference's counts


def unigram_log_probs(dataset: Any, vocab_size: int, pseudo_count: float = UNIGRAM_PSEUDO_COUNT) -> Tensor:
    """(V,) float64 log-probabilities of the add-`pseudo_count` unigram model of a dataset of (L,) token blocks."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for index in range(len(dataset)):
        counts += torch.bincount(dataset[index].flatten(), minlength=vocab_size).double()
    return torch.log((counts + pseudo_count) / (counts.sum() + pseudo_count * vocab_size))


def _max_length(network: nn.Module) -> int | None:
    """The longest sequence the network accepts (its or its trunk's `max_length`), None if it declares none."""
    for owner in (network, getattr(network, "trunk", None)):
        value = getattr(owner, "max_length", None)
        if isinstance(value, int):
            return value
    return None


class DiffusionModule(pl.LightningModule):
    """Train `network` on `loss` for the forward process (rate_matrix(vocab_size), schedule).

    vocab_size: clean tokens V; in the CLI it is linked from the data module, written nowhere else.
    network: called with the number of input states, process.num_states (V + 1 for the absorbing chain),
        or, for a time-independent loss (`loss.time_independent`, a denoiser), with V; it is called as
        network(x_t (B, L) long, sigma-bar(t) (B,)) -> (B, L, S), the output `loss.output_kind` names.
    rate_matrix: vocab_size -> ctmc.RateMatrix (ctmc.Absorbing or ctmc.Uniform).
    schedule: the noise schedule; None means ctmc.LogLinear().
    loss: process -> losses.DiffusionLoss.
    sampler: process -> samplers.Sampler, for periodic samples and the `sample` command; None: Euler.
    lr, betas, eps, weight_decay: AdamW. warmup_steps, decay, min_lr_ratio: see lr_schedule.warmup_decay;
        decay runs until trainer.max_steps (or the estimated number of steps).
    ema_decay: the EMA of the weights used for validation and sampling (0 disables averaging).
    seed: seeds the training noise (with the step and rank) and the validation noise (with the sequence).
    val_time_samples: stratified draws (times, or masked counts) per validation sequence (docs/training.md,
        Estimator: the SE of the bound against blocks and draws).
    train_estimator, val_estimator: "time" (t ~ loss.sample_time), "masked_count" (losses.MaskedCountEstimator:
        the absorbing chain only) or "auto" (masked_count on the absorbing chain, else time). Training with
        masked_count stratifies the counts over the batch; all choices have the same expectation.
    unigram_output_bias: at the start of `fit`, set the network's (and EMA's) output bias so that it starts
        as the unigram model of the training blocks (the network's `init_output_bias`; add-1/2 counts).
    """

    def __init__(
        self,
        vocab_size: int,
        network: Callable[[int], nn.Module] = models.DiT,
        rate_matrix: Callable[[int], ctmc.RateMatrix] = ctmc.Absorbing,
        schedule: ctmc.NoiseSchedule | None = None,
        loss: Callable[[ctmc.ForwardProcess], losses.DiffusionLoss] = losses.ScoreEntropy,
        sampler: Callable[[ctmc.ForwardProcess], samplers.Sampler] | None = None,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 2500,
        decay: Decay = "cosine",
        min_lr_ratio: float = 0.0,
        ema_decay: float = 0.9999,
        seed: int = 0,
        val_time_samples: int = 8,
        train_estimator: str = "auto",
        val_estimator: str = "auto",
        unigram_output_bias: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"model.vocab_size must be an int >= 1, got {vocab_size!r}; link it from the data")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"model.ema_decay must lie in [0, 1), got {ema_decay!r}; SEDD uses 0.9999")
        if not lr > 0.0:
            raise ValueError(f"model.lr must be > 0, got {lr!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"model.warmup_steps must be an int >= 0, got {warmup_steps!r}")
        if decay not in ("cosine", "linear", "constant"):
            raise ValueError(f"model.decay must be 'cosine', 'linear' or 'constant', got {decay!r}")
        if isinstance(val_time_samples, bool) or not isinstance(val_time_samples, int) or val_time_samples < 1:
            raise ValueError(f"model.val_time_samples must be an int >= 1, got {val_time_samples!r}")
        for name, value in (("train_estimator", train_estimator), ("val_estimator", val_estimator)):
            if value not in ESTIMATORS:
                raise ValueError(f"model.{name} must be one of {', '.join(ESTIMATORS)}, got {value!r}")
        self.vocab_size = vocab_size
        self.process = ctmc.ForwardProcess(rate_matrix(vocab_size), schedule or ctmc.LogLinear())
        self.loss = loss(self.process)
        if not isinstance(self.loss, losses.DiffusionLoss):
            raise TypeError(f"model.loss must build a losses.DiffusionLoss, got {type(self.loss).__name__}")
        self.network = network(vocab_size if self.loss.time_independent else self.process.num_states)
        self.ema = frozen_copy(self.network)
        self._sampler_factory = sampler
        self._sampler: samplers.Sampler | None = None
        self.optimizer_options = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.schedule_options = {"warmup_steps": warmup_steps, "decay": decay, "min_ratio": min_lr_ratio}
        self.ema_decay = ema_decay
        self.seed = seed
        self.val_time_samples = val_time_samples
        self.train_estimator = self._estimator(train_estimator, "train_estimator")
        self.val_estimator = self._estimator(val_estimator, "val_estimator")
        self.val_nats = torchmetrics.CatMetric().set_dtype(torch.float64)  # per-sequence estimates n_i
        self.val_tokens = torchmetrics.CatMetric().set_dtype(torch.float64)  # their token counts L_i
        self.val_unigram_nats = torchmetrics.SumMetric().set_dtype(torch.float64)
        self._unigram: Tensor | None = None  # (V,) log-probs of the training blocks' unigram model
        if unigram_output_bias and not hasattr(self.network, "init_output_bias"):
            raise ValueError(
                f"model.unigram_output_bias needs a network with init_output_bias (models.DiT, "
                f"models.RADDDenoiser), got {type(self.network).__name__}; set it to false"
            )
        self.unigram_output_bias = unigram_output_bias
        self.validation_result: dict[str, float] = {}  # the last validation's float64 values
        self.run_config: str | None = None  # YAML of the model and data config, set by the CLI
        self._batch_start = 0.0

    # ----------------------------------------------------------------------------------------- checks
    def check_data(self, vocab_size: int, seq_len: int) -> None:
        """Raise ValueError (one line, naming the key to change) unless the data fits this model."""
        if vocab_size != self.vocab_size:
            raise ValueError(
                f"the data's tokenizer has vocab_size {vocab_size} but the model was built for {self.vocab_size}; "
                "use the tokenizer the model was trained with (data.tokenizer)"
            )
        max_length = _max_length(self.network)
        if max_length is not None and seq_len > max_length:
            raise ValueError(
                f"data.seq_len={seq_len} is larger than the network's max_length={max_length}; "
                f"lower data.seq_len or set model.network.init_args.max_length >= {seq_len}"
            )

    def _estimator(self, choice: str, name: str) -> losses.MaskedCountEstimator | None:
        """The MaskedCountEstimator for `choice` ("masked_count", or "auto" on the absorbing chain), else None."""
        absorbing = isinstance(self.process.rate_matrix, ctmc.Absorbing)
        if choice == "masked_count" and not (absorbing and isinstance(self.loss, losses.DiffusionLoss)):
            raise ValueError(
                f"model.{name}=masked_count needs the absorbing chain (ctmc.Absorbing), got "
                f"{type(self.process.rate_matrix).__name__}; use {name}=time"
            )
        if choice == "masked_count" or (choice == "auto" and absorbing):
            return losses.MaskedCountEstimator(self.process)
        return None

    @property
    def max_length(self) -> int | None:
        """The longest sequence the network accepts (None if it declares none)."""
        return _max_length(self.network)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "vocab_size"):
            self.check_data(datamodule.vocab_size, datamodule.hparams.seq_len)
        train_dataset = getattr(datamodule, "train_dataset", None)
        if stage != "predict" and train_dataset is not None and self._unigram is None:
            self._unigram = unigram_log_probs(train_dataset, self.vocab_size)
        if stage == "fit" and self.unigram_output_bias:  # a resumed run's checkpoint overwrites this after setup
            if self._unigram is None:
                raise ValueError("model.unigram_output_bias needs a data module with a train_dataset")
            for network in (self.network, self.ema):
                network.init_output_bias(self._unigram.to(self.device, next(network.parameters()).dtype))

    # --------------------------------------------------------------------------------------- networks
    def network_call(self, network: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
        """(x_t, total noise) -> network output, for `network` (self.network or self.ema)."""
        return lambda x_t, total: network(x_t, total)

    def sampling_model(self) -> samplers.ConcreteScore | samplers.Denoiser:
        """The EMA network wrapped for the samplers: a Denoiser for log-probability outputs, else a score."""
        network = self.ema
        if self.loss.output_kind == "log_score":
            return samplers.ConcreteScore(lambda x, total: network(x, total), log=True)  # samplers pass sigma-bar
        return samplers.Denoiser(lambda x: network(x, None), log=True)

    @property
    def sampler(self) -> samplers.Sampler:
        """The sampler of `generate`, built from the process on first use (default samplers.EulerSampler)."""
        if self._sampler is None:
            self._sampler = (self._sampler_factory or samplers.EulerSampler)(self.process)
        return self._sampler

    @torch.no_grad()
    def generate(
        self, batch_size: int, length: int, generator: torch.Generator | None = None, **options: Any
    ) -> Tensor:
        """Tokens (batch_size, length) from self.sampler with the EMA weights; options go to sampler.sample."""
        return self.sampler.sample(
            self.sampling_model(), batch_size, length, generator=generator, device=self.device, **options
        )

    def train(self, mode: bool = True) -> DiffusionModule:
        """nn.Module.train, except that the EMA copy always stays in eval mode (no dropout in sampling)."""
        super().train(mode)
        self.ema.eval()
        return self

    # --------------------------------------------------------------------------------------- training
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

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """mean over the batch of loss(network(x_t, sigma-bar(t)), x_0, x_t, t) / L: nats per token."""
        x0 = batch
        length = x0.shape[1]
        step_index = self.trainer.fit_loop.epoch_loop.total_batch_idx
        seeds = (self.seed, step_index, self.global_rank)
        if self.train_estimator is None:
            t, x_t = seeded_noise(self.process, self.loss.sample_time, x0, 1, False, *seeds)
            nats = self.loss(self.network(x_t, self.process.total(t)), x0, x_t, t)  # (B,)
        else:
            draw = seeded_count_noise(self.train_estimator, self.loss.time_density, x0, 1, True, *seeds)
            output = self.network(draw.x_t, self.process.total(draw.t))
            nats = draw.weight.to(output.dtype) * self.loss(output, x0, draw.x_t, draw.t)  # (B,)
        loss = nats.mean() / length
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/nats_per_sequence", nats.mean().detach())
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._batch_start
        self.log("train/tokens_per_s", batch.numel() * self.trainer.world_size / max(elapsed, 1e-9))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the EMA update (before any callback's on_train_batch_end checkpoints)."""
        super().optimizer_step(*args, **kwargs)
        update_average(self.ema, self.network, self.ema_decay)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.network.parameters(), **self.optimizer_options)
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else int(self.trainer.estimated_stepping_batches)
        factor = partial(warmup_decay, total_steps=total, **self.schedule_options)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------- validation
    def negative_elbo_draws(self, x0: Tensor, num_draws: int | None = None, seed: int | None = None) -> Tensor:
        """(B, K) negative-ELBO draws (nats) of the EMA network on x0 (B, L), K = num_draws (val_time_samples).

        Row means are unbiased per-sequence estimates; draws are seeded by (seed, sequence content) and use
        `val_estimator` (training.elbo.sequence_negative_elbo). `lightning evaluate` calls this too.
        """
        return sequence_negative_elbo(
            self.process, self.loss, self.loss.sample_time, self.ema, x0,
            self.val_time_samples if num_draws is None else num_draws, self.seed if seed is None else seed,
            estimator=self.val_estimator,
        )

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        nats = self.negative_elbo_draws(batch).mean(dim=1)  # (B,) per-sequence estimates
        self.val_nats.update(nats.double())
        self.val_tokens.update(torch.full_like(nats, float(batch.shape[1]), dtype=torch.float64))
        if self._unigram is not None:
            unigram = self._unigram.to(batch.device)[batch]
            self.val_unigram_nats.update(-unigram.sum())

    def on_validation_epoch_end(self) -> None:
        """Log bits/token with its SE (ratio estimator over sequences) and the unigram reference."""
        nats, tokens = self.val_nats.compute(), self.val_tokens.compute()  # gathered over batches and devices
        unigram = self.val_unigram_nats.compute()
        for metric in (self.val_nats, self.val_tokens, self.val_unigram_nats):
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
        self.validation_result = result
        self.log("val/nats_per_token", total_nats / total_tokens, sync_dist=False)
        self.log("val/bits_per_token", result["bits_per_token"], prog_bar=True, sync_dist=False)
        self.log("val/perplexity_bound", result["perplexity_bound"], sync_dist=False)
        for key in ("bits_per_token_se", "unigram_bits_per_token"):
            if key in result:
                self.log(f"val/{key}", result[key], sync_dist=False)

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # ------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = {"vocab_size": self.vocab_size, "config": self.run_config}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CONFIG_KEY, {})
        if stored.get("vocab_size", self.vocab_size) != self.vocab_size:
            raise ValueError(
                f"the checkpoint was trained with vocab_size {stored['vocab_size']}, this run has "
                f"{self.vocab_size}; use the checkpoint's data.tokenizer"
            )


