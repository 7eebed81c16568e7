"""Monte-Carlo estimates of the negative ELBO of whole sequences, with noise seeded per sequence.

For a loss whose expectation over its own time sampler and x_t ~ q(x_t | x_0) is the negative ELBO (in
nats per sequence), K stratified times t_k = sample_time(K, antithetic=True) and one x_t per time give the
unbiased estimate (1/K) sum_k loss(x_0, x_t^k, t_k) >= -log p_theta(x_0). With a
`losses.MaskedCountEstimator` (absorbing chain) the K draws are stratified over the number of masked tokens
instead, and each loss is multiplied by its importance weight: the same expectation with bounded terms
(docs/losses.md). The draws of a sequence come from generators seeded by (seed, hash of the sequence), so
the estimate of a sequence does not depend on its batch, its position in the batch, or the device that
evaluates it. `prior_nats` is the t = 1 prior term every reported bound includes, and `ratio_estimate` turns
per-sequence estimates into nats/token with a standard error. The training module's steps (training.module)
draw their noise with the same functions, and its validation computes the same bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ctmc import ForwardProcess
from evaluation.seeding import content_seeds, seeded_generator
from losses.base import DiffusionLoss
from losses.estimators import MaskedCountEstimator, NoiseDraw, stratified_counts
from losses.prior import PriorKL

Network = Callable[..., Tensor]


def loss_output(network: Network, loss: DiffusionLoss, x_t: Tensor, total: Tensor, packed: bool = True) -> Tensor:
    """The network output `loss` reads: network(x_t, total, where=where) packed (N, S) for where =
    loss.output_positions(x_t), or the full (B, L, S) network(x_t, total) when the loss reads every position
    (where is None) or packed is False. x_t: (B, L) long; total: (B,) the total noise sigma-bar(t).

    Either output gives the same loss(output, x0, x_t, t) (losses.DiffusionLoss); the packed one computes the
    network's head only at the positions whose loss term can be nonzero (the masked ones, absorbing chain).
    """
    where = loss.output_positions(x_t) if packed else None
    return network(x_t, total) if where is None else network(x_t, total, where=where)


def seeded_noise(
    process: ForwardProcess,
    sample_time: Callable[..., Tensor],
    x0: Tensor,
    num_time_samples: int,
    antithetic: bool,
    *seed_parts: int,
) -> tuple[Tensor, Tensor]:
    """Times and noisy sequences with each sequence's noise seeded by (seed_parts, hash of the sequence).

    x0: (B, L) long. For every row, K = num_time_samples times from sample_time(K, antithetic=...) (a CPU
    generator) and x_t ~ P(0, t)[x0, :] (a generator on x0's device). Returns the times (B K,) and x_t
    (B K, L), rows grouped by sequence. Invariant to the order and the batching of the rows.
    """
    length = x0.shape[1]
    times, noisy = [], []
    for row, row_seed in zip(x0, content_seeds(x0), strict=True):
        cpu_generator = seeded_generator("cpu", *seed_parts, row_seed)
        t = sample_time(num_time_samples, generator=cpu_generator, antithetic=antithetic).to(x0.device)
        generator = seeded_generator(x0.device, *seed_parts, row_seed, 1)
        times.append(t)
        noisy.append(process.sample(row.expand(num_time_samples, length), t[:, None], generator=generator))
    return torch.cat(times), torch.cat(noisy)


def seeded_count_noise(
    estimator: MaskedCountEstimator,
    time_density: Callable[[Tensor], Tensor],
    x0: Tensor,
    num_draws: int,
    stratify_rows: bool,
    *seed_parts: int,
) -> NoiseDraw:
    """Masked-count draws (losses.MaskedCountEstimator) with each sequence's noise seeded by its content.

    x0: (B, L) long. Each row gets K = num_draws masked counts stratified over 1..L (`stratified_counts`)
    and its t, subset and weight from a generator seeded by (seed_parts, hash of the row). With
    stratify_rows (K = 1, training) the counts are stratified over the rows instead: the row whose hash
    ranks b-th gets 1 + floor(L (u + b) / B), u from a generator seeded by seed_parts, so that the batch
    covers 1..L evenly whatever the order of its rows. Returns draws of B K rows, grouped by sequence.
    """
    rows, length = x0.shape
    seeds = content_seeds(x0)
    if stratify_rows:
        ranks = torch.tensor(seeds).argsort().argsort()
        shared = stratified_counts(rows, length, seeded_generator("cpu", *seed_parts))
        row_counts = [shared[rank].reshape(1) for rank in ranks.tolist()]
    draws = []
    for index, (row, row_seed) in enumerate(zip(x0, seeds, strict=True)):
        generator = seeded_generator("cpu", *seed_parts, row_seed)
        counts = row_counts[index] if stratify_rows else stratified_counts(num_draws, length, generator)
        draws.append(estimator.sample(row.expand(counts.numel(), length), counts, time_density, generator))
    return NoiseDraw(*(torch.cat([getattr(draw, name) for draw in draws]) for name in ("t", "x_t", "weight")))


def sequence_negative_elbo(
    process: ForwardProcess,
    loss: DiffusionLoss,
    sample_time: Callable[..., Tensor],
    network: Network,
    x0: Tensor,
    num_time_samples: int,
    seed: int,
    estimator: MaskedCountEstimator | None = None,
    packed: bool = True,
) -> Tensor:
    """Per-sequence, per-draw negative ELBO terms weight * loss(network(x_t, total(t)), x0, x_t, t).

    process: the forward process; loss: (output, x0, x_t, t) -> (N,) nats; sample_time: the loss's
    `sample_time(n, device=, generator=, antithetic=)`; network: (x_t (N, L), total noise (N,)[, where=]) ->
    output, asked only for the positions the loss reads unless packed is False (`loss_output`).
    x0: (B, L) long. estimator: None draws K = num_time_samples stratified times from sample_time (weight
    1); a MaskedCountEstimator draws K stratified masked counts (the loss's `time_density` gives the weights).
    Returns (B, K) nats (float64 with an estimator); row means estimate the negative ELBO.
    """
    if isinstance(num_time_samples, bool) or not isinstance(num_time_samples, int) or num_time_samples < 1:
        raise ValueError(f"num_time_samples must be an int >= 1, got {num_time_samples!r}")
    batch = x0.shape[0]
    clean = x0.repeat_interleave(num_time_samples, dim=0)
    if estimator is None:
        t, x_t = seeded_noise(process, sample_time, x0, num_time_samples, True, seed)
        nats = loss(loss_output(network, loss, x_t, process.total(t), packed), clean, x_t, t)
    else:
        draw = seeded_count_noise(estimator, loss.time_density, x0, num_time_samples, False, seed)
        output = loss_output(network, loss, draw.x_t, process.total(draw.t), packed)
        nats = draw.weight * loss(output, clean, draw.x_t, draw.t).double()
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
