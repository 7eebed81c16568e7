"""`DiffusionModule`: the LightningModule that trains a network on a CTMC discrete diffusion loss.

It wires objects together: a rate matrix (built from the vocabulary size), a noise schedule, the
`ctmc.ForwardProcess` they make, a loss built from the process (`losses.DiffusionLoss`), a network built from
the number of states it reads, and optionally a sampler for periodic samples. One training step is

    t ~ loss.sample_time(B),  x_t ~ P(0, t)[x_0, :],  nats = loss(network(x_t, sigma-bar(t)), x_0, x_t, t)

and the optimiser minimises mean(nats) / L, nats per token. The network is asked only for the positions the
loss reads (`where = loss.output_positions(x_t)`, the masked ones on the absorbing chain; `packed_outputs`).
On the absorbing chain the masked-count estimator (losses.MaskedCountEstimator, `train_estimator` /
`val_estimator`) replaces t ~ sample_time by importance-sampled (t, x_t) with the same expectation and
bounded terms: nats = weight * loss(...).
With labelled data (training/base_module.py) the network also reads each block's class, dropped to the null label
with probability label_dropout: network(x_t, sigma-bar(t), label=c).
Validation estimates the negative ELBO with an exponential moving average (EMA) of the weights and
`val_time_samples` stratified draws per sequence (evaluation/bounds.py), plus the t = 1 prior term
KL(q(x_1 | x_0) || pi^L) of each sequence (losses.PriorKL; `prior_nats`), so that the logged value is a true
upper bound; the term's size is logged beside it (val/prior_nats_per_token). The optimiser, EMA, schedule,
validation sums and checkpoint metadata are the shared training path's (training/base_module.py). The
per-sequence estimates are gathered with torchmetrics (whatever the batching and the number of devices)
into bits/token = sum nats / sum tokens / ln 2 and its standard error (evaluation.bounds.ratio_estimate), beside
the cross-entropy of a unigram model of the training blocks on the same validation blocks.

The noise of a draw comes from the loss (`DiffusionLoss.draw_noise`, `sample_counts`, `count_draws`,
`importance_weighted`; evaluation/bounds.py), and the network gets `clean=x0` when its forward takes it, so block
diffusion (models.BlockDenoiser with losses.BlockDiffusionLoss, configs/bd3lm.yaml: one time or masked count per
block, every block's loss in one forward pass) trains, validates (on `loss.bound()`) and samples (block by block,
samplers.BlockSampler) on this same path. The network and the loss must agree on the block size, which must
divide data.seq_len (one-line errors naming the keys).

Randomness: the noise of a sequence at training batch k on rank r comes from generators seeded by
(seed, k, r, hash of the sequence) (evaluation/bounds.py seeded_noise), so it does not depend on the order of
the rows in the batch, and the
training shuffle is replayed to epoch e on resume, so that a run resumed from a checkpoint written at the
end of an epoch's last batch (ModelCheckpoint every_n_train_steps) continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torchmetrics
from torch import Tensor, nn

import ctmc
import losses
import models
import samplers
from ctmc.checks import check_int
from evaluation.bounds import loss_output, prior_nats, seeded_count_noise, seeded_noise, sequence_negative_elbo
from training.base_module import TrainingModule


class DiffusionModule(TrainingModule):
    """Train `network` on `loss` for the forward process (rate_matrix(vocab_size), schedule).

    vocab_size: clean tokens V; in the CLI it is linked from the data module, written nowhere else.
    network: called with the number of input states, process.num_states (V + 1 for the absorbing chain),
        or, for a time-independent loss (`loss.time_independent`, a denoiser), with V (and num_classes = C for
        labelled data, `shared` class_names); it is called as network(x_t (B, L) long, sigma-bar(t) (B,)[, label=
        (B,)]) -> (B, L, S), the output `loss.output_kind` names.
    rate_matrix: vocab_size -> ctmc.RateMatrix (any chain: ctmc.Absorbing, ctmc.Uniform, ctmc.hybrid.Hybrid, ...).
    schedule: the noise schedule; None means ctmc.LogLinear().
    loss: process -> losses.DiffusionLoss.
    sampler: process -> samplers.Sampler, for periodic samples and the `sample` command; None: Euler.
    val_time_samples: stratified draws (times, or masked counts) per validation sequence (docs/training.md,
        Estimator: the SE of the bound against blocks and draws).
    train_estimator, val_estimator: "time" (t ~ loss.sample_time), "masked_count" (losses.MaskedCountEstimator:
        the absorbing chain only) or "auto" (masked_count on the absorbing chain, else time). Training with
        masked_count stratifies the counts over the batch; all choices have the same expectation.
    packed_outputs: ask the network only for the positions the loss reads (network(x_t, sigma, where=
        loss.output_positions(x_t)), the masked ones on the absorbing chain; evaluation.bounds.loss_output): the
        same loss and gradients without the head at the other positions. False: always the full output (a
        network whose forward takes no `where`).
    compile: torch.compile the trained network (nn.Module.compile: the weights, the checkpoint keys and the EMA
        copy, which stays eager, are unchanged); true uses torch's default backend (inductor), a string names
        another backend. Off by default: on CPU it did not pay (docs/experiments.md).
    shared: the arguments of the shared training path (training.base_module.TrainingModule: lr, betas, eps,
        weight_decay, warmup_steps, decay, min_lr_ratio, ema_decay, seed, unigram_output_bias, class_names,
        label_dropout), declared there once; LightningCLI lists them under `model` as if they were written here
        (--print_config).
    """

    KIND = "diffusion"

    def __init__(
        self,
        vocab_size: int,
        network: Callable[[int], nn.Module] = models.DiT,
        rate_matrix: Callable[[int], ctmc.RateMatrix] = ctmc.Absorbing,
        schedule: ctmc.NoiseSchedule | None = None,
        loss: Callable[[ctmc.ForwardProcess], losses.DiffusionLoss] = losses.ScoreEntropy,
        sampler: Callable[[ctmc.ForwardProcess], samplers.Sampler] | None = None,
        val_time_samples: int = 8,
        train_estimator: str = "auto",
        val_estimator: str = "auto",
        packed_outputs: bool = True,
        compile: bool | str = False,
        **shared: Any,
    ) -> None:
        super().__init__(vocab_size, **shared)
        check_int("model.val_time_samples", val_time_samples, 1)
        self.process = ctmc.ForwardProcess(rate_matrix(vocab_size), schedule or ctmc.LogLinear())
        self.loss = loss(self.process)
        if not isinstance(self.loss, losses.DiffusionLoss):
            raise TypeError(f"model.loss must build a losses.DiffusionLoss, got {type(self.loss).__name__}")
        self.set_network(self.build_network(network, self.loss.network_input_states()))
        check_blocks(self.network, self.loss)
        self.packed_outputs = packed_outputs
        if packed_outputs and "where" not in inspect.signature(self.network.forward).parameters:
            raise ValueError(
                f"model.packed_outputs asks the network for the outputs the loss reads (forward(x, sigma, where=)), "
                f"but {type(self.network).__name__}.forward takes no `where`; set model.packed_outputs=false"
            )
        if compile is not False:
            if compile is True or compile == "inductor":
                self.network.compile()
            elif isinstance(compile, str) and compile in torch._dynamo.list_backends(exclude_tags=()):
                self.network.compile(backend=compile)
            else:
                backends = ", ".join(torch._dynamo.list_backends())
                raise ValueError(
                    f"model.compile must be true, false or a torch.compile backend ({backends}), got {compile!r}"
                )
        self._sampler_factory = sampler
        self._sampler: samplers.Sampler | None = None
        self.val_time_samples = val_time_samples
        self.train_estimator = losses.estimator_for(train_estimator, self.process, "train_estimator")
        if self.train_estimator is not None and self.loss.bound() is not self.loss:  # a clipped objective
            if train_estimator == "masked_count":
                raise ValueError(
                    "model.train_estimator=masked_count estimates the full bound, but model.loss is clipped to a "
                    "range of mask rates (a training objective only); set model.train_estimator=time or auto"
                )
            self.train_estimator = None  # auto: the clipped objective's own times
        self.val_estimator = losses.estimator_for(val_estimator, self.process, "val_estimator")
        self._prior_kl: losses.PriorKL | None = None  # built on first use (prior_nats)
        self.val_prior_nats = torchmetrics.SumMetric().set_dtype(torch.float64)  # the prior terms inside val_nats

    # --------------------------------------------------------------------------------------- networks
    def sampling_model(self) -> samplers.ConcreteScore | samplers.Denoiser:
        """The EMA network wrapped for the samplers by the loss's output kind (samplers.network_model)."""
        return samplers.network_model(self.ema, self.loss.output_kind)

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
        """Tokens (batch_size, length) from self.sampler with the EMA weights; options go to sampler.sample.
        A block model (samplers.BlockModel) is sampled block after block with self.sampler inside each block
        (samplers.BlockSampler, key/value cache on)."""
        if isinstance(self.ema, samplers.BlockModel):
            block = samplers.BlockSampler(self.sampler, self.ema.block_size)
            return block.sample(self.ema, batch_size, length, generator=generator, device=self.device, **options)
        return self.sampler.sample(
            self.sampling_model(), batch_size, length, generator=generator, device=self.device, **options
        )

    # --------------------------------------------------------------------------------------- training
    def training_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """mean over the batch of loss(network(x_t, sigma-bar(t)[, label]), x_0, x_t, t) / L: nats per token (labels
        after label dropout, `dropped_labels`)."""
        x0, labels = self.split_batch(batch)
        length = x0.shape[1]
        step_index = self.trainer.fit_loop.epoch_loop.total_batch_idx
        seeds = (self.seed, step_index, self.global_rank)
        network = labelled(self.network, self.dropped_labels(labels, step_index))
        if self.train_estimator is None:
            t, x_t = seeded_noise(self.loss, x0, 1, False, *seeds)
            output = loss_output(network, self.loss, x_t, self.process.total(t), self.packed_outputs, x0)
            nats = self.loss(output, x0, x_t, t)  # (B,)
        else:
            draw = seeded_count_noise(self.loss, self.train_estimator, x0, 1, True, *seeds)
            total = self.process.total(draw.t)
            output = loss_output(network, self.loss, draw.x_t, total, self.packed_outputs, x0)
            nats = self.loss.importance_weighted(output, x0, draw, output.dtype)  # (B,)
        loss = nats.mean() / length
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/nats_per_sequence", nats.mean().detach())
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    # ------------------------------------------------------------------------------------- validation
    def negative_elbo_draws(
        self, x0: Tensor, num_draws: int | None = None, seed: int | None = None, label: Tensor | None = None
    ) -> Tensor:
        """(B, K) negative-ELBO draws (nats) of the EMA network on x0 (B, L), K = num_draws (val_time_samples),
        given the labels label (B,) (None: unlabelled; a conditional network then reads the null label).

        Row means are unbiased per-sequence estimates of loss.bound() (the full range of a clipped objective);
        draws are seeded by (seed, sequence content) and use `val_estimator` (evaluation.bounds.
        sequence_negative_elbo), so that the bounds of one sequence under two labels share their noise.
        `lightning evaluate` computes the same (evaluation.restore.TrainedModel).
        """
        num_draws = self.val_time_samples if num_draws is None else num_draws
        network = labelled(self.ema, None if label is None else label.repeat_interleave(num_draws))
        return sequence_negative_elbo(
            self.loss, network, x0, num_draws, self.seed if seed is None else seed,
            estimator=self.val_estimator, packed=self.packed_outputs,
        )

    def validation_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        """The per-sequence bound (conditional on the labels of labelled blocks), and with labels the unconditional
        bound (null label) on the same noise."""
        batch, labels = self.split_batch(batch)
        prior = self.prior_nats(batch)  # (B,) the t = 1 prior term, so that the logged value is a true bound
        nats = self.negative_elbo_draws(batch, label=labels).mean(dim=1) + prior  # (B,) per-sequence estimates
        if labels is not None:
            null = self.negative_elbo_draws(batch, label=self.null_labels(batch.shape[0], batch.device))
            self.val_null_nats.update((null.mean(dim=1) + prior).double())
        self.val_prior_nats.update(prior.sum())
        self.val_nats.update(nats.double())
        self.val_tokens.update(torch.full_like(nats, float(batch.shape[1]), dtype=torch.float64))
        if self._unigram is not None:
            unigram = self._unigram.to(batch.device)[batch]
            self.val_unigram_nats.update(-unigram.sum())

    def check_data(self, vocab_size: int, seq_len: int) -> None:
        """TrainingModule.check_data, and a block model's block_size must divide data.seq_len (its blocks tile
        every training sequence)."""
        super().check_data(vocab_size, seq_len)
        block_size = getattr(self.network, "block_size", None)
        if block_size is not None and seq_len % block_size:
            raise ValueError(
                f"model.network.init_args.block_size={block_size} does not divide data.seq_len={seq_len}; choose a "
                f"block_size that divides it (e.g. {largest_divisor(seq_len, block_size)}) and give the loss the same"
            )

    def prior_nats(self, x0: Tensor) -> Tensor:
        """(B,) float64 prior term KL(p_{1|0}(. | x0) || pi^L) per sequence (evaluation.bounds.prior_nats), 0 for a
        loss that already holds it (D3PM). Added to every reported bound."""
        if self._prior_kl is None and not self.loss.includes_prior:
            self._prior_kl = losses.PriorKL(self.process)
        return prior_nats(self.loss, self._prior_kl, x0)

    def on_validation_epoch_end(self) -> None:
        """The shared sums (TrainingModule.on_validation_epoch_end), then the prior term's size beside them."""
        prior = self.val_prior_nats.compute()
        self.val_prior_nats.reset()
        super().on_validation_epoch_end()
        tokens = self.validation_result.get("tokens")
        if tokens:
            self.validation_result["prior_nats_per_token"] = float(prior) / tokens
            self.log("val/prior_nats_per_token", self.validation_result["prior_nats_per_token"], sync_dist=False)

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end


def check_blocks(network: nn.Module, loss: losses.DiffusionLoss) -> None:
    """Raise ValueError (one line, naming the keys) unless the network and the loss agree on the blocks: both
    without a block_size, or both with the same one (a block-causal network such as models.BlockDenoiser is
    trained by a block loss such as losses.BlockDiffusionLoss on the blocks it factorises over)."""
    network_blocks, loss_blocks = getattr(network, "block_size", None), getattr(loss, "block_size", None)
    if network_blocks == loss_blocks:
        return
    if loss_blocks is None:
        raise ValueError(
            f"model.network={type(network).__name__} factorises over blocks of {network_blocks} tokens, but "
            f"model.loss={type(loss).__name__} is not a block loss; use model.loss=losses.BlockDiffusionLoss with "
            f"block_size {network_blocks}"
        )
    if network_blocks is None:
        raise ValueError(
            f"model.loss={type(loss).__name__} needs a block-causal network with block_size {loss_blocks} "
            f"(models.BlockDenoiser), got model.network={type(network).__name__}"
        )
    raise ValueError(
        f"model.network.init_args.block_size={network_blocks} and model.loss.init_args.block_size={loss_blocks} "
        "differ; give both the same block size"
    )


def largest_divisor(length: int, at_most: int) -> int:
    """The largest divisor of length that is <= at_most (>= 1)."""
    return max(size for size in range(1, min(length, at_most) + 1) if length % size == 0)


def labelled(network: nn.Module, label: Tensor | None) -> Callable[..., Tensor]:
    """The network with its `label=` keyword bound to label (N,) (a row per network input row); the network itself
    when label is None."""
    return network if label is None else partial(network, label=label)
