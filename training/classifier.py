"""`ClassifierModule`: trains the classifier of noisy sequences that predictor guidance reads, on the training path.

Predictor guidance (samplers.predictor_guidance, Nisonoff et al. 2024) steers an unconditional diffusion model with
log p_phi(c | x_t, sigma-bar(t)), a classifier of the sequences the forward process makes from labelled blocks. One
training step draws, per block x_0 of class c,

    t ~ U(0, 1],   x_t ~ q(x_t | x_0) = P(0, t)[x_0, :],   loss = -log p_phi(c | x_t, sigma-bar(t)),

with the forward process (rate_matrix, schedule) of the diffusion model it will guide, and the optimiser minimises
the mean over the batch (nats per block). Validation draws `val_time_samples` stratified times per validation block
(noise seeded by the block's content, evaluation.bounds.seeded_noise) and logs the mean cross-entropy (nats per
block) and the accuracy of the most probable class, each with its standard error over blocks. The labels come from
the data (data.labels, linked as `class_names`); there is no label dropout. The optimiser, EMA, schedule and
checkpoint metadata are the shared path's (training/base_module.py); `lightning sample --classifier` reads the
checkpoint (configs/classifier-genre.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

import ctmc
import models
from ctmc.checks import check_int
from evaluation.bounds import seeded_noise
from losses.base import uniform_draws
from training.base_module import TrainingModule


def uniform_times(
    batch_size: int, device: torch.device | str | None = None, generator: torch.Generator | None = None,
    antithetic: bool = False,
) -> Tensor:
    """(B,) float32 times t = 1 - u in (0, 1], u uniform (stratified with antithetic; losses.base.uniform_draws)."""
    t = 1.0 - uniform_draws(batch_size, generator, antithetic)
    return t.clamp(min=torch.finfo(torch.float32).tiny).float().to(device)


class UniformTimeNoise:
    """The classifier's noise: t ~ U(0, 1] (uniform_times) and x_t ~ P(0, t)[x0, :], in the `draw_noise` form
    that evaluation.bounds.seeded_noise draws with (as losses.DiffusionLoss.draw_noise)."""

    def __init__(self, process: ctmc.ForwardProcess) -> None:
        self.process = process

    def draw_noise(self, x0: Tensor, antithetic: bool = False, generator: torch.Generator | None = None,
                   noise_generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(t (K,), x_t (K, L)) for the rows x0 (K, L) long; t from generator, x_t from noise_generator."""
        t = uniform_times(x0.shape[0], x0.device, generator, antithetic)
        return t, self.process.sample(x0, t[:, None], generator=noise_generator)


class ClassifierModule(TrainingModule):
    """Train `network(num_states, num_classes=C)` on the cross-entropy of the label at x_t (module docstring).

    vocab_size: clean tokens V (linked from the data). network: builds the classifier from the number of states of
    the chain (V + 1 on the absorbing chain) and num_classes; called as network(x_t (B, L) long, sigma-bar (B,)) ->
    (B, C) log-probabilities, e.g. models.NoisyClassifier. rate_matrix, schedule: the forward process, as
    training.module.DiffusionModule's (None: ctmc.LogLinear()); give those of the model to guide.
    val_time_samples: stratified times per validation block. shared: the shared training path's arguments
    (class_names, linked from data.class_names, must name at least two classes; label_dropout is not used).
    """

    KIND = "classifier"

    def __init__(
        self,
        vocab_size: int,
        network: Callable[..., nn.Module] = models.NoisyClassifier,
        rate_matrix: Callable[[int], ctmc.RateMatrix] = ctmc.Absorbing,
        schedule: ctmc.NoiseSchedule | None = None,
        val_time_samples: int = 4,
        **shared: Any,
    ) -> None:
        super().__init__(vocab_size, **shared)
        if self.num_classes < 2:
            raise ValueError(
                f"a classifier needs labelled data with at least two classes, got {list(self.class_names)}; set "
                "data.labels (genre, work, directory or a mapping file)"
            )
        check_int("model.val_time_samples", val_time_samples, 1)
        self.process = ctmc.ForwardProcess(rate_matrix(vocab_size), schedule or ctmc.LogLinear())
        self.set_network(self.build_network(network, self.process.num_states))
        self.val_time_samples = val_time_samples
        self.val_cross_entropy = torchmetrics.CatMetric().set_dtype(torch.float64)  # per block, mean over draws
        self.val_correct = torchmetrics.CatMetric().set_dtype(torch.float64)  # per block, share of draws right

    def class_log_probs(self, network: nn.Module, x0: Tensor, labels: Tensor, draws: int, antithetic: bool,
                        *seeds: int) -> tuple[Tensor, Tensor]:
        """(log p(c | x_t) (B draws, C), labels (B draws,)) at `draws` times per block of x0 (B, L), noise seeded by
        (seeds, block content)."""
        t, x_t = seeded_noise(UniformTimeNoise(self.process), x0, draws, antithetic, *seeds)
        return network(x_t, self.process.total(t)), labels.repeat_interleave(draws)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """mean over the batch of -log p_phi(c | x_t, sigma-bar(t)) at one t ~ U(0, 1] per block."""
        x0, labels = self.labelled_batch(batch)
        step_index = self.trainer.fit_loop.epoch_loop.total_batch_idx
        log_probs, targets = self.class_log_probs(self.network, x0, labels, 1, False, self.seed, step_index,
                                                  self.global_rank)
        loss = F.nll_loss(log_probs, targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def labelled_batch(self, batch: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(tokens, labels) of a labelled batch; ValueError (one line) for blocks without labels."""
        tokens, labels = self.split_batch(batch)
        if labels is None:
            raise ValueError("the classifier needs labelled batches; set data.labels (test_path blocks have none)")
        return tokens, labels

    @torch.no_grad()
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x0, labels = self.labelled_batch(batch)
        draws = self.val_time_samples
        log_probs, targets = self.class_log_probs(self.ema, x0, labels, draws, True, self.seed)
        cross_entropy = -log_probs.gather(1, targets[:, None]).view(-1, draws).double().mean(1)
        correct = (log_probs.argmax(1) == targets).view(-1, draws).double().mean(1)
        self.val_cross_entropy.update(cross_entropy)
        self.val_correct.update(correct)

    def on_validation_epoch_end(self) -> None:
        """Log the mean cross-entropy (nats per block) and accuracy over the validation blocks, each with its SE."""
        values = {"cross_entropy": self.val_cross_entropy, "accuracy": self.val_correct}
        gathered = {key: metric.compute() for key, metric in values.items() if metric.update_count}
        for metric in values.values():
            metric.reset()
        result: dict[str, float] = {}
        for key, value in gathered.items():
            value = value.reshape(-1)
            result[key] = float(value.mean())
            if value.numel() > 1:
                result[f"{key}_se"] = float(value.std() / math.sqrt(value.numel()))
        self.validation_result = result
        for key, value in result.items():
            self.log(f"val/{key}", value, prog_bar=key == "accuracy", sync_dist=False)

    on_test_epoch_end = on_validation_epoch_end
    test_step = validation_step
