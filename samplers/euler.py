"""Euler steps of the reverse chain (Lou et al. 2024: SEDD's Euler predictor).

Over [s, t] with dt = t - s, position i moves from x to y != x with probability

    dt R_t(x -> y) = dt sigma(t) Q[y, x] s(x)_y,

and stays with probability 1 - dt sigma(t) sum_{y != x} Q[y, x] s(x)_y, clamped at 0 and renormalised (as
SEDD does): the position jumps with probability min(1, dt sigma(t) exit_rate), to y proportional to its rate.
Works for every chain; for the absorbing and uniform chains it never builds a B x L x n tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.jumps import apply_jumps, reverse_jumps
from samplers.models import ModelOutput


class EulerSampler(Sampler):
    """First-order Euler discretisation of the reverse CTMC; see `samplers.Sampler` for the options."""

    name = "euler"  # the `lightning sample --sampler` name

    def step(
        self, output: ModelOutput, x: Tensor, t: Tensor, s: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """x_s from x_t (B, L): jump with probability min(1, (t - s) sigma(t) exit_rate). t, s: (B,)."""
        jumps = reverse_jumps(self.process.rate_matrix, output, x)
        scale = (self.process.sigma(t) * (t - s)).double()[:, None]
        return apply_jumps(x, (scale * jumps.exit_rate).clamp(max=1.0), jumps, self.decoding, generator)
