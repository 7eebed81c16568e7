"""Remasking sampler of the absorbing chain (ReMDM; Wang, Schiff, Sahoo, Kuleshov 2025): revealed tokens may be
masked again, so that more network calls than positions can still improve the samples.

With alpha_t = e^{-sigma-bar(t)} the probability that a token is still clean at t, one step from t to s < t
draws, per position and from the same x_t (the ReMDM posterior q_sigma(z_s | z_t, x)):

    clean z_t:   z_s = mask with probability sigma_t, else z_t;
    masked z_t:  z_s = x ~ p(x_0^i | z_t) with probability (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t),
                 else the mask,

with 0 <= sigma_t <= sigma_max = min(1, (1 - alpha_s) / alpha_t). For every sigma_t this keeps the forward
marginal: given x, P(z_s = x) = alpha_t (1 - sigma_t) + (alpha_s - (1 - sigma_t) alpha_t) = alpha_s, and
sigma_t = 0 is plain (MDLM) ancestral unmasking. Schedules of sigma_t (`remasking`, with `strength` = eta):

- "rate" (default): sigma_t = min(sigma_max, 1 - exp(-eta (sigma-bar(t) - sigma-bar(s)))), remasking at eta times
  the forward masking rate. In continuous time, masking at rate c and unmasking at the extra rate
  c alpha / (1 - alpha) p(x_0^i | z) is in detailed balance with p_t (RADD: s_y = alpha / (1 - alpha) p(y | z)),
  so with an exact denoiser the sampler reaches the data law as the steps shrink, for every eta.
- "cap": sigma_t = min(eta, sigma_max) (ReMDM's max-capped schedule), eta in [0, 1].
- "rescale": sigma_t = eta sigma_max (ReMDM's rescaled schedule), eta in [0, 1].
"cap" and "rescale" remask a fixed fraction per step however small the step, so their parallel updates do not
vanish with more steps; `benchmarks/bench_samplers.py` measures all three.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import ctmc
from samplers.base import Sampler
from samplers.models import ModelOutput

REMASKING_SCHEDULES = ("rate", "cap", "rescale")


class ReMDMSampler(Sampler):
    """ReMDM remasking for `ctmc.Absorbing`. remasking: the schedule "rate", "cap" or "rescale" (module docstring);
    strength: eta >= 0 (<= 1 for "cap" and "rescale"; 0 is plain ancestral unmasking). Other options as
    `samplers.Sampler`; one network call per step (+ 1 for the final denoising step)."""

    name = "remdm"

    def __init__(
        self,
        process: ctmc.ForwardProcess,
        steps: int = 128,
        eps: float = 1e-5,
        *,
        remasking: str = "rate",
        strength: float = 1.0,
        **options: object,
    ) -> None:
        if not isinstance(getattr(process, "rate_matrix", None), ctmc.Absorbing):
            raise TypeError("ReMDMSampler needs a ForwardProcess with the absorbing chain (ctmc.Absorbing)")
        super().__init__(process, steps, eps, **options)
        if remasking not in REMASKING_SCHEDULES:
            raise ValueError(f"remasking must be one of {REMASKING_SCHEDULES}, got {remasking!r}")
        top = float("inf") if remasking == "rate" else 1.0
        if not isinstance(strength, (int, float)) or not 0.0 <= strength <= top:
            raise ValueError(f"strength must be a number in [0, {top}] for remasking={remasking!r}, got {strength!r}")
        self.remasking = remasking
        self.strength = float(strength)

    def remasking_probability(self, total_t: Tensor, total_s: Tensor) -> Tensor:
        """sigma_t (B,) float64 of the chosen schedule, within [0, sigma_max]; total_*: (B,) sigma-bar."""
        total_t, total_s = total_t.double(), total_s.double()
        # (1 - alpha_s) / alpha_t = expm1(sigma-bar(s)) e^{sigma-bar(t) - sigma-bar(s)}, without overflow for large t.
        ratio = -torch.expm1(-total_s) * torch.exp(total_t)
        most = ratio.clamp(max=1.0)
        if self.remasking == "rate":
            return torch.minimum(-torch.expm1(-self.strength * (total_t - total_s)), most)
        if self.remasking == "cap":
            return most.clamp(max=self.strength)
        return self.strength * most

    def plan(
        self, x: Tensor, t: Tensor, s: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """(reveal, hide): (B, L) bool, the masks that unmask and the tokens that re-mask over [s, t], from one
        float64 uniform per position. Neither depends on the model, so it is asked only for the reveals."""
        mask = self.process.rate_matrix.mask_index
        total_t, total_s = self.process.total(t).double(), self.process.total(s).double()
        remask = self.remasking_probability(total_t, total_s)[:, None]
        alive_t, alive_s = torch.exp(-total_t)[:, None], torch.exp(-total_s)[:, None]  # alpha
        unmask = ((alive_s - alive_t + remask * alive_t) / -torch.expm1(-total_t)[:, None]).clamp(0.0, 1.0)
        masked = x == mask
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        return masked & (u < unmask), ~masked & (u < remask)

    def apply(
        self, output: ModelOutput, x: Tensor, reveal: Tensor, hide: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """x (B, L) with `hide` re-masked and `reveal` set to tokens drawn from p(x_0^i | x_t)."""
        mask = self.process.rate_matrix.mask_index
        out = x.masked_fill(hide, mask)
        if bool(reveal.any()):
            out[reveal] = self.decoding.draw(output.rows(reveal)[:, :mask], generator)
        return out

    def advance(
        self,
        evaluate: Callable[..., ModelOutput],
        x: Tensor,
        t: Tensor,
        s: Tensor,
        query: Tensor,
        generator: torch.Generator | None,
        **options: object,
    ) -> Tensor:
        """Draw which positions reveal and re-mask, then ask the model only for the revealing rows (keeping the
        masks' rows when a denoiser's output is cached, for the steps in which the row does not change): the
        same generator draws, in the same order, as `step`."""
        reveal, hide = self.plan(x, t, s, generator)
        return self.apply(evaluate(x, query, reveal, keep=self.needed(x)), x, reveal, hide, generator)

    def step(self, output: ModelOutput, x: Tensor, t: Tensor, s: Tensor, generator: torch.Generator | None) -> Tensor:
        """x_s from x_t (B, L) with the ReMDM posterior; t, s: (B,); output: the model at (x, t)."""
        reveal, hide = self.plan(x, t, s, generator)
        return self.apply(output, x, reveal, hide, generator)

    def __repr__(self) -> str:
        return (
            f"ReMDMSampler({self.process!r}, steps={self.steps}, eps={self.eps}, remasking={self.remasking!r}, "
            f"strength={self.strength})"
        )
