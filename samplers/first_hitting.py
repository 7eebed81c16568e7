"""The first-hitting sampler of the absorbing chain (Zheng et al. 2024): exact unmasking times, one token a call.

Given x_t with m masked positions, the reverse process unmasks each of them at an independent time; with
a_t = 1 - e^{-sigma-bar(t)} (the probability of being masked at t), a position masked at t is still masked at
s < t with probability a_s / a_t, so v_j = a_{tau_j} / a_t are i.i.d. uniform on (0, 1). The first of the m
unmaskings (going backwards) happens at the largest v, v_(1) = u^{1/m} with u ~ U(0, 1); the k-th largest is

    v_(k) = prod_{j=0}^{k-1} u_j^{1 / (m - j)}   (u_j i.i.d. uniform; by the memoryless property of order
                                                   statistics of uniforms),

and sigma-bar(s) = -log(1 - a_t v_(k)), s = schedule.inverse_total(sigma-bar(s)). Which position unmasks is
uniform among the masked ones (the masking times are independent of the data), and its token is drawn from
p(x_0^i = y | x_t) (the denoiser, or the score times expm1(sigma-bar) by the RADD factorisation), so with an
exact model and one token per call (`steps=None`) the sampler draws the model's distribution exactly, in
exactly m network calls. The positions are chosen before the call, and the model is asked only for their rows
(`where`, docs/samplers.md): with steps=None one row per sequence per call.

With `steps=K` < m, each call reveals ceil(m_remaining / calls_remaining) uniformly chosen positions at once,
each from its own conditional (MDLM-style parallel decoding: approximate, K calls). The model is queried at the
time of the last reveal of the call (clamped below at eps); a time-independent denoiser ignores it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

import ctmc
from samplers.base import Sampler
from samplers.models import ModelOutput


class FirstHittingSampler(Sampler):
    """Exact first-hitting sampling for `ctmc.Absorbing`. steps: None (one token per call, exact) or the
    number of network calls K >= 1; eps: the smallest time at which the model is queried. No final
    denoising step is needed (every position is revealed)."""

    name = "first-hitting"  # the `lightning sample --sampler` name

    def __init__(
        self, process: ctmc.ForwardProcess, steps: int | None = None, eps: float = 1e-5, **options: object
    ) -> None:
        if not getattr(getattr(process, "rate_matrix", None), "score_factorises", False):
            raise TypeError(
                "FirstHittingSampler needs a ForwardProcess with the absorbing chain (ctmc.Absorbing): its masked "
                "positions must unmask independently to the clean-data conditional"
            )
        if options.pop("denoise", False):
            raise ValueError("FirstHittingSampler reveals every position itself; denoise must be False")
        super().__init__(process, 1 if steps is None else steps, eps, denoise=False, **options)
        self.steps = steps

    def num_steps(self, x: Tensor, free: Tensor) -> int:
        most = int((x == self.process.rate_matrix.mask_index).sum(1).max())
        return most if self.steps is None else min(self.steps, most)

    def schedule(
        self, x: Tensor, free: Tensor, generator: torch.Generator | None
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, dict]]:
        """Per-sequence hitting times: yield (t, s, max(s, eps), {"reveal": (B,) counts}) per call."""
        schedule = self.process.schedule
        masked = (x == self.process.rate_matrix.mask_index).sum(1)
        calls = self.num_steps(x, free)
        t = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
        for call in range(calls):
            reveal = torch.div(masked + (calls - call) - 1, calls - call, rounding_mode="floor")
            width = max(int(reveal.max()), 1)
            u = torch.rand(x.shape[0], width, dtype=torch.float64, device=x.device, generator=generator)
            j = torch.arange(width, device=x.device)
            active = j < reveal[:, None]
            log_v = torch.where(active, torch.log(u) / (masked[:, None] - j).clamp_min(1), 0.0).sum(1)
            alive = -torch.expm1(-schedule.total(t))
            total_s = -torch.log1p(-alive * torch.exp(log_v))
            s = torch.where(reveal > 0, schedule.inverse_total(total_s).clamp(0.0, 1.0), t)
            s = torch.minimum(s, t)
            yield t, s, s.clamp_min(self.eps), {"reveal": reveal}
            masked = masked - reveal
            t = s

    def choose(self, x: Tensor, reveal: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """(B, L) bool: `reveal[b]` (default 1) masked positions of each sequence, uniformly chosen (one float64
        key per position, the smallest keys of the masked ones)."""
        masked = x == self.process.rate_matrix.mask_index
        if reveal is None:
            reveal = masked.any(1).long()
        keys = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        keys = torch.where(masked, keys, 2.0)
        rank = keys.argsort(1).argsort(1)
        return masked & (rank < reveal[:, None])

    def reveal(
        self, output: ModelOutput, x: Tensor, chosen: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """x (B, L) with each chosen position set to a token drawn from p(x_0^i | x_t); output holds (at least)
        the chosen positions' rows."""
        if not bool(chosen.any()):
            return x
        out = x.clone()
        out[chosen] = self.decoding.draw(output.rows(chosen)[:, : self.process.rate_matrix.mask_index], generator)
        return out

    def advance(
        self,
        evaluate: Callable[[Tensor, Tensor, Tensor | None], ModelOutput],
        x: Tensor,
        t: Tensor,
        s: Tensor,
        query: Tensor,
        generator: torch.Generator | None,
        reveal: Tensor | None = None,
    ) -> Tensor:
        """Choose the positions first, then ask the model for their rows only (one row per sequence per call
        with steps=None), then draw their tokens: the same generator draws, in the same order, as `step`."""
        chosen = self.choose(x, reveal, generator)
        return self.reveal(evaluate(x, query, chosen), x, chosen, generator)

    def step(
        self,
        output: ModelOutput,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None,
        reveal: Tensor | None = None,
    ) -> Tensor:
        """Unmask `reveal[b]` (default 1) uniformly chosen masked positions of each sequence, each with a token
        drawn from p(x_0^i | x_t). x: (B, L) long; t, s: (B,) (unused: the times only matter through the model).
        """
        return self.reveal(output, x, self.choose(x, reveal, generator), generator)
