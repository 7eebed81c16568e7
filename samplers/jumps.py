"""Per-position jumps of the reverse chain, factored as "does it jump?" times "where to?".

Every sampler step here moves each position at most once: position i jumps with a probability computed from
its total off-diagonal rate (a (B, L) tensor), and only the positions that jump draw a destination from their
row of rates. For the absorbing chain (and the uniform one) the total rate is a sum over the score, so a step
reads the score once and draws over the vocabulary only at the few positions that jump; nothing of size
B x L x n is created (`benchmarks/bench_samplers.py` compares this with a dense step).

Reverse rates (seed 003, row convention): R_t(x -> y) = sigma(t) Q[y, x] s(x)_y for y != x, per position.
- Absorbing: Q[y, mask] = 1 for clean y and Q[y, x] = 0 otherwise for a clean x, so a masked position leaves
  at total rate sigma * sum_{y < V} s_y to y with probability proportional to s_y; clean positions never move.
- Uniform: Q[y, x] = 1 / n, total rate sigma * (sum_y s_y - s_x) / n, destination proportional to s_y (y != x).
- Any other chain: the dense rows Q[:, x] * s.
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
    """The reverse rates R(x -> y) / sigma = Q[y, x] s(x)_y of every position (seed 003, `ctmc.reverse_rates`).

    output: the model evaluated at x; x: (B, L) long. Closed forms for `ctmc.Absorbing` and `ctmc.Uniform`.
    """
    if isinstance(rate_matrix, ctmc.Absorbing):
        vocab = rate_matrix.vocab_size
        weights, scale = output.clean_scores(vocab)
        masked = x == rate_matrix.mask_index
        # Sum over the contiguous last dimension (a strided slice with a dtype change is ~40x slower), then
        # drop the mask column of a concrete score: sum_{y < V} s_y.
        values = output.values
        sums = values.sum(-1).double()
        if values.shape[-1] > vocab:
            sums = sums - values[..., vocab:].sum(-1).double()
        exit_rate = torch.where(masked, sums.clamp_min(0.0) * scale.double()[:, None], 0.0)

        def rows(selected: Tensor) -> Tensor:
            picked = weights[selected].double() * scale.double()[:, None].expand_as(x)[selected][:, None]
            picked = picked * masked[selected][:, None]
            return torch.cat([picked, picked.new_zeros(picked.shape[0], 1)], dim=-1)

        return Jumps(exit_rate, rows)
    if isinstance(rate_matrix, ctmc.Uniform) and output.scale is None:
        n = rate_matrix.num_states
        values = output.values
        own = values.gather(-1, x[..., None]).squeeze(-1).double()
        exit_rate = (values.sum(-1, dtype=torch.float64) - own) / n

        def rows(selected: Tensor) -> Tensor:
            picked = values[selected].double() / n
            return picked.scatter_(-1, x[selected][:, None], 0.0)

        return Jumps(exit_rate, rows)
    scores = output.dense_scores(x, rate_matrix)
    return Jumps.from_dense(rate_matrix.incoming_rates(x).to(scores.dtype) * scores, x)


def forward_jumps(rate_matrix: ctmc.RateMatrix, x: Tensor) -> Jumps:
    """The forward rates Q[x, y] of every position (used by correctors, whose rates are R_t + Q_t)."""
    if isinstance(rate_matrix, ctmc.Absorbing):
        clean = x != rate_matrix.mask_index
        n = rate_matrix.num_states

        def rows(selected: Tensor) -> Tensor:
            out = torch.zeros(int(selected.sum()), n, dtype=torch.float64, device=x.device)
            out[:, rate_matrix.mask_index] = clean[selected].double()
            return out

        return Jumps(clean.double(), rows)
    return Jumps.from_dense(rate_matrix.outgoing_rates(x), x)


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
