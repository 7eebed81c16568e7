"""SEDD's analytic ("Tweedie") sampler: each step uses the exact forward transition over [s, t].

    p(x_s = y | x_t = x) proportional to (s(x) exp(-Delta Q))_y P(Delta)[y, x],  Delta = sigma-bar(t) - sigma-bar(s)

(see `samplers.analytic`). For the absorbing chain with an exact score it is exact per position: a masked
position unmasks with probability (e^{-sigma-bar(s)} - e^{-sigma-bar(t)}) / (1 - e^{-sigma-bar(t)}).
"""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.analytic import analytic_jumps
from samplers.base import Sampler
from samplers.jumps import apply_jumps
from samplers.models import ModelOutput


class TweedieSampler(Sampler):
    """The analytic sampler of SEDD; see `samplers.Sampler` for the options."""

    name = "tweedie"  # the `lightning sample --sampler` name

    def step(
        self, output: ModelOutput, x: Tensor, t: Tensor, s: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """x_s from x_t (B, L) with the analytic step from sigma-bar(t) to sigma-bar(s). t, s: (B,)."""
        probability, jumps = analytic_jumps(self.process.rate_matrix, output, x, output.total, self.process.total(s))
        return apply_jumps(x, probability, jumps, self.decoding, generator)
