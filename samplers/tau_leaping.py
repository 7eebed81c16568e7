"""Tau-leaping (Campbell et al. 2022): Poisson numbers of jumps with the rates frozen over the step.

With the reverse rates R_t(x -> y) = sigma(t) Q[y, x] s(x)_y held fixed over [s, t] (dt = t - s), the number of
jumps of position i to each y is K_y ~ Poisson(dt R_t(x -> y)), independently.

- Categorical states (absorbing, uniform, dense): at most one jump per position. By the superposition of
  Poisson processes, the total N = sum_y K_y ~ Poisson(dt lambda) (lambda = sum_y R_t(x -> y)) and each jump's
  destination is y with probability R_t(x -> y) / lambda. Multiple jumps are RESOLVED TO THE FIRST ONE: a
  position with N >= 1 moves once, to y ~ R_t(x -> .) / lambda, so it jumps with probability
  1 - e^{-dt lambda} (the later jumps were drawn from rates that no longer hold once the first has happened;
  for the absorbing chain a revealed token can never move again).
- Ordinal states (a chain whose `ordinal` is True, e.g. `ctmc.BirthDeath`, or `ordinal=True`): the jumps are
  summed, x <- clip(x + sum_y K_y (y - x), 0, n - 1), as in Campbell et al. for images.

Optional corrector steps (Campbell et al. 2022, predictor-corrector): after each predictor step, tau-leap
`corrector_steps` times at the new time s with rates R_s + Q_s (the forward rates sigma(s) Q[x, y] added),
whose stationary law is p_s, over a length `corrector_size` (default: the mean grid step). A step with
s == t is a corrector step. Each corrector step costs one network call.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

import ctmc
from samplers.base import Sampler
from samplers.jumps import Jumps, apply_jumps, forward_jumps, reverse_jumps
from samplers.models import ModelOutput


class TauLeapingSampler(Sampler):
    """Tau-leaping sampler; options beyond `samplers.Sampler`'s:

    ordinal: sum the jumps and clip (default: the chain's `ordinal`, True for `ctmc.BirthDeath`);
    corrector_steps: corrector steps after each predictor step (>= 0); corrector_size: their time length.
    """

    name = "tau-leaping"  # the `lightning sample --sampler` name

    def __init__(
        self,
        process: ctmc.ForwardProcess,
        steps: int = 128,
        eps: float = 1e-5,
        *,
        ordinal: bool | None = None,
        corrector_steps: int = 0,
        corrector_size: float | None = None,
        **options: object,
    ) -> None:
        super().__init__(process, steps, eps, **options)
        self.ordinal = process.rate_matrix.ordinal if ordinal is None else bool(ordinal)
        if not isinstance(corrector_steps, int) or corrector_steps < 0:
            raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
        self.corrector_steps = corrector_steps
        mean_step = float(self.times[0] - self.times[-1]) / (self.times.numel() - 1)
        self.corrector_size = mean_step if corrector_size is None else float(corrector_size)
        if not self.corrector_size > 0:
            raise ValueError(f"corrector_size must be > 0, got {corrector_size!r}")

    def schedule(
        self, x: Tensor, free: Tensor, generator: torch.Generator | None
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, dict]]:
        """The grid's predictor steps, each followed by `corrector_steps` corrector steps (s, s) at time s."""
        for t, s, query, options in super().schedule(x, free, generator):
            yield t, s, query, options
            for _ in range(self.corrector_steps):
                yield s, s, s, {}

    def num_steps(self, x: Tensor, free: Tensor) -> int:
        return super().num_steps(x, free) * (1 + self.corrector_steps)

    def step(
        self, output: ModelOutput, x: Tensor, t: Tensor, s: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """x_s from x_t (B, L) by one tau-leap over dt = t - s; a corrector step of length corrector_size if s == t."""
        rate_matrix = self.process.rate_matrix
        jumps = reverse_jumps(rate_matrix, output, x)
        corrector = bool((s == t).all())
        if corrector:
            jumps = jumps + forward_jumps(rate_matrix, x)
        dt = torch.full_like(t, self.corrector_size) if corrector else t - s
        scale = (self.process.sigma(t) * dt).double()[:, None]
        if self.ordinal:
            return self._ordinal_leap(x, jumps, scale, generator)
        probability = -torch.expm1(-scale * jumps.exit_rate)
        return apply_jumps(x, probability, jumps, self.decoding, generator)

    def _ordinal_leap(self, x: Tensor, jumps: Jumps, scale: Tensor, generator: torch.Generator | None) -> Tensor:
        """Summed Poisson jumps K_y ~ Poisson(scale R(x -> y) / sigma), x + sum_y K_y (y - x), clipped."""
        n = self.process.num_states
        everywhere = torch.ones_like(x, dtype=torch.bool)
        rates = jumps.rows(everywhere).view(*x.shape, n) * scale[..., None]
        counts = torch.poisson(rates, generator=generator)
        offsets = torch.arange(n, device=x.device, dtype=torch.float64) - x[..., None]
        moved = x + (counts * offsets).sum(-1).round().long()
        return moved.clamp(0, n - 1)
