"""Monte-Carlo estimates of the negative ELBO of whole sequences, with noise seeded per sequence.

For a loss whose expectation over its own time sampler and x_t ~ q(x_t | x_0) is the negative ELBO (in
nats per sequence), K stratified times t_k = sample_time(K, antithetic=True) and one x_t per time give the
unbiased estimate (1/K) sum_k loss(x_0, x_t^k, t_k) >= -log p_theta(x_0). The times and x_t of a sequence
come from a generator seeded by (seed, hash of the sequence), so the estimate of a sequence does not depend
on its batch, its position in the batch, or the device that evaluates it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ctmc import ForwardProcess
from training.seeding import content_seeds, seeded_generator

Network = Callable[[Tensor, Tensor], Tensor]


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


def sequence_negative_elbo(
    process: ForwardProcess,
    loss: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor],
    sample_time: Callable[..., Tensor],
    network: Network,
    x0: Tensor,
    num_time_samples: int,
    seed: int,
) -> Tensor:
    """Per-sequence, per-time-sample negative ELBO terms loss(network(x_t, total(t)), x0, x_t, t).

    process: the forward process; loss: (output, x0, x_t, t) -> (N,) nats; sample_time: the loss's
    `sample_time(n, device=, generator=, antithetic=)`; network: (x_t (N, L), total noise (N,)) -> output.
    x0: (B, L) long. Returns (B, K) nats, K = num_time_samples; row means estimate the negative ELBO.
    """
    if isinstance(num_time_samples, bool) or not isinstance(num_time_samples, int) or num_time_samples < 1:
        raise ValueError(f"num_time_samples must be an int >= 1, got {num_time_samples!r}")
    batch = x0.shape[0]
    t, x_t = seeded_noise(process, sample_time, x0, num_time_samples, True, seed)
    clean = x0.repeat_interleave(num_time_samples, dim=0)
    nats = loss(network(x_t, process.total(t)), clean, x_t, t)
    return nats.reshape(batch, num_time_samples)
