"""`ARModule`: the autoregressive objective on the shared training path (training/base_module.py).

The network (models.ARTransformer by default) gives log p_theta(x_l | x_{<l}) for every position of a block
at once (teacher forcing), and the objective is the exact negative log-likelihood

    nats(x) = -sum_{l < L} log p_theta(x_l | x_{<l}),   loss = mean over the batch of nats(x) / L,

the next-token cross-entropy in nats per token. Validation sums the same exact nats of the EMA network over
the validation blocks, so `val/bits_per_token` is the model's exact cross-entropy (no Monte-Carlo draws: its
standard error is the spread between sequences only), directly comparable with a diffusion run's bound on
the same blocks (configs/ar.yaml beside configs/sedd.yaml). With labelled data (`class_names`) the network reads
the class, `nll(x, label)` = -log p_theta(x | c), trained with label dropout, and validation gives the conditional
and the unconditional (null label) NLL, both exact. Everything else (optimiser, EMA, schedule,
logging, the validation sums, checkpoint metadata, the sample logger) is the shared path's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import models
import samplers
from training.base_module import TrainingModule


class ARModule(TrainingModule):
    """Train `network(vocab_size)` on the next-token cross-entropy (its `nll(x) -> (B,)` nats).

    network: vocab_size -> a module with forward(x (B, L) long) -> (B, L, V) log p(x_l | x_<l), nll(x) -> (B,)
        and next_token_log_probs(prefix (B, k)) -> (B, V), e.g. models.ARTransformer (with num_classes = C and a
        label= keyword for labelled data).
    shared: the arguments of the shared training path (training.base_module.TrainingModule), declared there once.
    """

    KIND = "autoregressive"

    def __init__(
        self, vocab_size: int, network: Callable[[int], nn.Module] = models.ARTransformer, **shared: Any
    ) -> None:
        super().__init__(vocab_size, **shared)
        built = self.build_network(network, vocab_size)
        for method in ("nll", "next_token_log_probs"):
            if not callable(getattr(built, method, None)):
                raise TypeError(
                    f"model.network must build an autoregressive model with {method}() (models.ARTransformer), "
                    f"got {type(built).__name__}"
                )
        self.set_network(built)

    def training_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """mean over the batch of -log p_theta(x[ | c]) / L: the next-token cross-entropy in nats per token (labels
        after label dropout)."""
        batch, labels = self.split_batch(batch)
        step_index = self.trainer.fit_loop.epoch_loop.total_batch_idx
        dropped = self.dropped_labels(labels, step_index)
        nats = self.network.nll(batch) if dropped is None else self.network.nll(batch, label=dropped)  # (B,)
        loss = nats.mean() / batch.shape[1]
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/nats_per_sequence", nats.mean().detach())
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    @torch.no_grad()
    def sequence_nats(self, x0: Tensor, label: Tensor | None = None) -> Tensor:
        """(B,) float64 exact -log p_theta(x0[ | label]) of the EMA network, x0: (B, L) long, label: (B,) long or None.
        `lightning evaluate` uses it."""
        return (self.ema.nll(x0) if label is None else self.ema.nll(x0, label=label)).double()

    def validation_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        batch, labels = self.split_batch(batch)
        nats = self.sequence_nats(batch, labels)  # (B,) exact per-sequence NLL
        if labels is not None:
            self.val_null_nats.update(self.sequence_nats(batch, self.null_labels(batch.shape[0], batch.device)))
        self.val_nats.update(nats)
        self.val_tokens.update(torch.full_like(nats, float(batch.shape[1])))
        if self._unigram is not None:
            self.val_unigram_nats.update(-self._unigram.to(batch.device)[batch].sum())

    test_step = validation_step

    @torch.no_grad()
    def generate(
        self,
        batch_size: int,
        length: int,
        generator: torch.Generator | None = None,
        prefix: Tensor | None = None,
        decoding: samplers.Decoding | None = None,
        **options: Any,
    ) -> Tensor:
        """Tokens (batch_size, length) drawn ancestrally from the EMA network (samplers.ancestral_sample)."""
        return self.generate_result(batch_size, length, generator, prefix, decoding, **options).tokens

    @torch.no_grad()
    def generate_result(
        self,
        batch_size: int,
        length: int,
        generator: torch.Generator | None = None,
        prefix: Tensor | None = None,
        decoding: samplers.Decoding | None = None,
        **options: Any,
    ) -> samplers.SamplingResult:
        """`generate` with the number of network calls (samplers.SamplingResult)."""
        if options:
            raise ValueError(
                f"an autoregressive model samples ancestrally and takes no sampler option {next(iter(options))!r}; "
                "use temperature, top_k, top_p, greedy or a prefix"
            )
        return samplers.ancestral_sample(
            self.ema.next_token_log_probs, batch_size, length, prefix=prefix, decoding=decoding,
            generator=generator, device=self.device,
        )
