"""Monte-Carlo estimates of the negative ELBO of whole sequences, with noise seeded per sequence.

For a loss whose expectation over its own time sampler and x_t ~ q(x_t | x_0) is the negative ELBO (in
nats per sequence), K stratified times t_k = sample_time(K, antithetic=True) and one x_t per time give the
unbiased estimate (1/K) sum_k loss(x_0, x_t^k, t_k) >= -log p_theta(x_0). With a
`losses.MaskedCountEstimator` (absorbing chain) the K draws are stratified over the number of masked tokens
instead, and each loss is multiplied by its importance weight: the same expectation with bounded terms
(docs/losses.md). The loss draws the noise (`DiffusionLoss.draw_noise`, `sample_counts`, `count_draws`), so
that a loss with one time or masked count per block (losses.BlockDiffusionLoss) runs on the same path, and
the network gets `clean=x0` when it takes it (models.BlockDenoiser's training form); the bound is the one of
`loss.bound()` (the full range of mask rates for a clipped training objective).
The draws of a sequence come from generators seeded by (seed, hash of the sequence), so
the estimate of a sequence does not depend on its batch, its position in the batch, or the device that
evaluates it. `prior_nats` is the t = 1 prior term every reported bound includes, and `ratio_estimate` turns
per-sequence estimates into nats/token with a standard error. The training module's steps (training.module)
draw their noise with the same functions, and its validation computes the same bound.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from evaluation.seeding import content_seeds, seeded_generator
from losses.base import DiffusionLoss
from losses.estimators import MaskedCountEstimator, NoiseDraw
from losses.prior import PriorKL

Network = Callable[..., Tensor]


def takes_keyword(network: Network, name: str) -> bool:
    """Whether network's forward (or the callable itself) has a parameter `name`."""
    forward = getattr(network, "forward", network)
    try:
        return name in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def loss_output(
    network: Network, loss: DiffusionLoss, x_t: Tensor, total: Tensor, packed: bool = True, clean: Tensor | None = None
) -> Tensor:
    """The network output `loss` reads: network(x_t, total, where=where) packed (N, S) for where =
    loss.output_positions(x_t), or the full (B, L, S) network(x_t, total) when the loss reads every position
    (where is None) or packed is False. x_t: (B, L) long; total: the total noise sigma-bar(t), (B,) (or (B, K)
    per block, for a network that ignores it). clean: x0 (B, L), passed as `clean=` to a network whose forward
    takes it (models.BlockDenoiser's training form: each block conditions on the clean blocks before it).

    Either output gives the same loss(output, x0, x_t, t) (losses.DiffusionLoss); the packed one computes the
    network's head only at the positions whose loss term can be nonzero (the masked ones, absorbing chain).
    """
    where = loss.output_positions(x_t) if packed else None
    options = {} if where is None else {"where": where}
    if clean is not None and takes_keyword(network, "clean"):
        options["clean"] = clean
    return network(x_t, total, **options)


def seeded_noise(loss: DiffusionLoss, x0: Tensor, num_time_samples: int, antithetic: bool, *seed_parts: int) -> tuple[
        Tensor, Tensor]:
    """Times and noisy sequences with each sequence's noise seeded by (seed_parts, hash of the sequence).

    x0: (B, L) long. loss: a DiffusionLoss, or anything with its draw_noise (training.classifier.UniformTimeNoise).
    For every row, loss.draw_noise of K = num_time_samples copies of it, the times from a CPU
    generator (sample_time(K, antithetic=...) for most losses; one time per block for losses.BlockDiffusionLoss)
    and x_t from a generator on x0's device. Returns the times (B K,) (or (B K, blocks)) and x_t (B K, L), rows
    grouped by sequence. Invariant to the order and the batching of the rows.
    """
    length = x0.shape[1]
    times, noisy = [], []
    for row, row_seed in zip(x0, content_seeds(x0), strict=True):
        cpu_generator = seeded_generator("cpu", *seed_parts, row_seed)
        generator = seeded_generator(x0.device, *seed_parts, row_seed, 1)
        t, x_t = loss.draw_noise(row.expand(num_time_samples, length), antithetic, cpu_generator, generator)
        times.append(t)
        noisy.append(x_t)
    return torch.cat(times), torch.cat(noisy)


def seeded_count_noise(
    loss: DiffusionLoss,
    estimator: MaskedCountEstimator,
    x0: Tensor,
    num_draws: int,
    stratify_rows: bool,
    *seed_parts: int,
) -> NoiseDraw:
    """Masked-count draws (losses.MaskedCountEstimator through loss.count_draws) with each sequence's noise seeded
    by its content.

    x0: (B, L) long. Each row gets the masked counts of K = num_draws draws (loss.sample_counts: stratified over
    1..L, or per block for losses.BlockDiffusionLoss) and its t, subset and weight from a generator seeded by
    (seed_parts, hash of the row). With stratify_rows (K = 1, training) the counts are stratified over the rows
    instead: the row whose hash ranks b-th gets row b of loss.sample_counts(B, L) drawn from a generator seeded by
    seed_parts, so that the batch covers the counts evenly whatever the order of its rows. Returns draws of B K
    rows, grouped by sequence.
    """
    rows, length = x0.shape
    seeds = content_seeds(x0)
    if stratify_rows:
        ranks = torch.tensor(seeds).argsort().argsort()
        shared = loss.sample_counts(rows, length, seeded_generator("cpu", *seed_parts))
        row_counts = [shared[rank : rank + 1] for rank in ranks.tolist()]
    draws = []
    for index, (row, row_seed) in enumerate(zip(x0, seeds, strict=True)):
        generator = seeded_generator("cpu", *seed_parts, row_seed)
        counts = row_counts[index] if stratify_rows else loss.sample_counts(num_draws, length, generator)
        draws.append(loss.count_draws(estimator, row.expand(counts.shape[0], length), counts, generator))
    return NoiseDraw(*(torch.cat([getattr(draw, name) for draw in draws]) for name in ("t", "x_t", "weight")))


def sequence_negative_elbo(
    loss: DiffusionLoss,
    network: Network,
    x0: Tensor,
    num_time_samples: int,
    seed: int,
    estimator: MaskedCountEstimator | None = None,
    packed: bool = True,
) -> Tensor:
    """Per-sequence, per-draw negative ELBO terms of `loss.bound()`: loss(network(x_t, total(t)), x0, x_t, t), or
    with an estimator weight * loss(...) (loss.importance_weighted).

    loss: the training loss, (output, x0, x_t, t) -> (N,) nats; its `bound()` is estimated (the full range of a
    clipped objective) and its draw methods give the noise (`seeded_noise`, `seeded_count_noise`); network:
    (x_t (N, L), total noise[, where=][, clean=]) -> output, asked only for the positions the loss reads unless
    packed is False (`loss_output`). x0: (B, L) long. estimator: None draws K = num_time_samples stratified times
    (weight 1); a MaskedCountEstimator draws K stratified masked counts. Returns (B, K) nats (float64 with an
    estimator); row means estimate the negative ELBO.
    """
    if isinstance(num_time_samples, bool) or not isinstance(num_time_samples, int) or num_time_samples < 1:
        raise ValueError(f"num_time_samples must be an int >= 1, got {num_time_samples!r}")
    loss = loss.bound()
    process = loss.process
    batch = x0.shape[0]
    clean = x0.repeat_interleave(num_time_samples, dim=0)
    if estimator is None:
        t, x_t = seeded_noise(loss, x0, num_time_samples, True, seed)
        nats = loss(loss_output(network, loss, x_t, process.total(t), packed, clean), clean, x_t, t)
    else:
        draw = seeded_count_noise(loss, estimator, x0, num_time_samples, False, seed)
        output = loss_output(network, loss, draw.x_t, process.total(draw.t), packed, clean)
        nats = loss.importance_weighted(output, clean, draw, torch.float64)
    return nats.reshape(batch, num_time_samples)


def prior_nats(loss: DiffusionLoss, prior: PriorKL | None, x0: Tensor) -> Tensor:
    """(B,) float64 prior term KL(p_{1|0}(. | x0) || pi^L) per sequence of x0 (B, L) (losses.PriorKL with the
    forward prior), added to every reported bound; 0 for a loss that already holds it (`loss.includes_prior`, D3PM).
    prior: the PriorKL of loss.process (built once by the caller), None when loss.includes_prior."""
    if loss.includes_prior:
        return torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    return prior(x0).to(x0.device)


@dataclass
class RatioEstimate:
    """R = sum(values) / sum(counts) and its delta-method standard error (None with fewer than 2 sequences)."""

    value: float
    standard_error: float | None


def ratio_estimate(values: Tensor, counts: Tensor) -> RatioEstimate:
    """The ratio of sums R = sum n_i / sum L_i and SE(R) = sqrt(sum (n_i - R L_i)^2 / (N (N-1))) / mean(L).

    values: (N,) per-sequence estimates n_i; counts: (N,) positive weights L_i (tokens). float64 throughout.
    """
    n = values.double()
    weights = counts.double()
    if n.dim() != 1 or n.shape != weights.shape or n.numel() == 0:
        raise ValueError("values and counts must be non-empty (N,) tensors of the same shape")
    ratio = n.sum() / weights.sum()
    if n.numel() < 2:
        return RatioEstimate(float(ratio), None)
    residual = n - ratio * weights
    variance = residual.square().sum() / (n.numel() * (n.numel() - 1)) / weights.mean().square()
    return RatioEstimate(float(ratio), float(variance.sqrt()))
