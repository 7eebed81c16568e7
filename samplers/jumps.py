"""Per-position jumps of the reverse chain, factored as "does it jump?" times "where to?".

Every sampler step here moves each position at most once: position i jumps with a probability computed from
its total off-diagonal rate (a (B, L) tensor), and only the positions that jump draw a destination from their
row of rates. The rates come from the chain (`ctmc.RateMatrix.reverse_exit_rate`, `reverse_rates_to`): for
the structured chains the exit rate is a sum over the score, so a step reads the score once and draws over the
vocabulary only at the few positions that jump; nothing of size B x L x n is created
(`benchmarks/bench_samplers.py` compares this with a dense step).

Reverse rates (Lou et al. 2024, row convention): R_t(x -> y) = sigma(t) Q[y, x] s(x)_y for y != x, per position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import ctmc
from samplers.decoding import Decoding
from samplers.models import ModelOutput


@dataclass
class Jumps:
    """Off-diagonal rates of every position, without the schedule's factor sigma(t).

    exit_rate: (B, L) float64, sum_{y != x_i} rate(x_i -> y).
    rows: selection (B, L) bool -> (k, n) float64 rates of the k selected positions (zero at y = x_i), in the
    row-major order of the selection; each row sums to its exit_rate.
    """

    exit_rate: Tensor
    rows: Callable[[Tensor], Tensor]

    def __add__(self, other: Jumps) -> Jumps:
        """The superposition of two independent jump processes: rates add."""
        return Jumps(self.exit_rate + other.exit_rate, lambda selected: self.rows(selected) + other.rows(selected))

    @classmethod
    def from_dense(cls, rates: Tensor, x: Tensor) -> Jumps:
        """From a dense (B, L, n) tensor of rates; the entry at y = x is ignored."""
        off = rates.to(torch.float64).scatter(-1, x[..., None], 0.0)
        return cls(off.sum(-1), lambda selected: off[selected])


def reverse_jumps(rate_matrix: ctmc.RateMatrix, output: ModelOutput, x: Tensor) -> Jumps:
    """The reverse rates R(x -> y) / sigma = Q[y, x] s(x)_y of every position (Lou et al. 2024).

    output: the model evaluated at x; x: (B, L) long. The chain computes the rates from the score, on the
    positions that have an output (`output.where`); the others have rate 0 (a sampler asks for every position
    whose reverse rates can be non-zero: the masks on the absorbing chain).
    """
    exit_rate = output.statistic(rate_matrix.reverse_exit_rate, x)
    width = rate_matrix.num_states

    def rows(selected: Tensor) -> Tensor:
        return output.row_function(rate_matrix.reverse_rates_to, x, selected, width)

    return Jumps(exit_rate, rows)


def forward_jumps(rate_matrix: ctmc.RateMatrix, x: Tensor) -> Jumps:
    """The forward rates Q[x, y] of every position (used by correctors, whose rates are R_t + Q_t)."""

    def rows(selected: Tensor) -> Tensor:
        picked = x[selected]
        return rate_matrix.outgoing_rates(picked).scatter(-1, picked[:, None], 0.0)

    return Jumps(rate_matrix.exit_rate(x), rows)


def apply_jumps(
    x: Tensor, jump_probability: Tensor, jumps: Jumps, decoding: Decoding, generator: torch.Generator | None
) -> Tensor:
    """Move each position with probability jump_probability[b, i] (float64 uniform), to y ~ its row of rates.

    x: (B, L) long; jump_probability: (B, L) in [0, 1], positive only where the exit rate is. Returns (B, L).
    """
    u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
    moving = u < jump_probability
    if not bool(moving.any()):
        return x
    out = x.clone()
    out[moving] = decoding.draw(jumps.rows(moving), generator)
    return out
