"""Second-order tau-leaping: the theta-trapezoidal and theta-RK-2 methods (Ren, Chen, Zhu, Guo, Chen, Rotskoff,
Tao, Ying 2025, "Fast Solvers for Discrete Diffusion Models").

One step from t down to s (Delta = t - s, intermediate time rho = t - theta Delta) with the reverse rates
R_t(x)(i -> y) = sigma(t) Q[y, x_i] s_t(x)_{i, y} (`samplers.jumps.reverse_jumps`), two network calls:

    stage 1 (both):    x* = tau-leap of length theta Delta from x with the rates R_t(x)
    trapezoidal:       x_s = tau-leap of length (1 - theta) Delta from x* with the rates
                           ( alpha_1 R_rho(x*) - alpha_2 R_t(x) )_+,
                       alpha_1 = 1 / (2 theta (1 - theta)),  alpha_2 = ((1 - theta)^2 + theta^2) / (2 theta (1 - theta))
    RK-2:              x_s = tau-leap of length Delta from x with the rates
                           ( (1 - 1 / (2 theta)) R_t(x) + 1 / (2 theta) R_rho(x*) )_+

The coefficients are those of the second-order explicit theta-methods for y' = f(t, y): for the trapezoidal
rule, expanding x* = x + theta h f and x_s = x* + (1 - theta) h (alpha_1 f(x*) - alpha_2 f(x)) to O(h^2) gives
alpha_1 - alpha_2 = 1 (consistency) and theta (1 - theta) alpha_1 = 1/2 (second order), hence the values above;
theta in (0, 1). RK-2 is Heun/midpoint's family, theta in (0, 1]. Rates are indexed by destination token: a
stage's jump of position i to y counts only if y differs from the state the stage starts from (the rate "to the
current state" is zero), and negative combined rates are clipped at zero (the paper's (.)_+).

Each tau-leap moves a position at most once (categorical states; the first of several Poisson jumps, as in
`samplers.TauLeapingSampler`): a position jumps with probability 1 - exp(-length * total rate), to y in
proportion to its rate. The combined rates of stage 2 are formed only at the positions that may jump, in chunks,
so that a step holds the two model outputs and no third B x L x n tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

import ctmc
from samplers.base import Sampler
from samplers.decoding import Decoding
from samplers.jumps import Jumps, apply_jumps, reverse_jumps
from samplers.models import CHUNK_ELEMENTS, ModelOutput


def combine_jumps(terms: Sequence[tuple[Tensor, Jumps]], current: Tensor, num_states: int) -> Jumps:
    """The clipped linear combination (sum_k weight_k rates_k)_+ of jump rates, zero at the current state.

    terms: (weight (B,) float64, Jumps) pairs; current: (B, L) long, the state the combined jumps start from;
    num_states: n, the width of the rows.
    exit_rate is the row sum of the clipped rates, computed in chunks of positions (never a full B x L x n
    tensor); positions where no positively weighted term has a positive rate have exit rate 0.
    """
    batch, length = current.shape
    candidates = torch.zeros_like(current, dtype=torch.bool)
    for weight, jumps in terms:
        candidates |= (jumps.exit_rate > 0) & (weight > 0)[:, None]

    def rows(selected: Tensor) -> Tensor:
        combined = None
        for weight, jumps in terms:
            part = jumps.rows(selected) * weight[:, None].expand(batch, length)[selected][:, None]
            combined = part if combined is None else combined + part
        combined = combined.clamp_min_(0.0)
        return combined.scatter_(-1, current[selected][:, None], 0.0)

    exit_rate = torch.zeros(batch, length, dtype=torch.float64, device=current.device)
    index = candidates.flatten().nonzero().squeeze(1)
    if index.numel() > 0:
        size = max(1, CHUNK_ELEMENTS // num_states)
        flat = exit_rate.view(-1)
        for start in range(0, index.numel(), size):
            chunk = index[start : start + size]
            selected = torch.zeros(batch * length, dtype=torch.bool, device=current.device)
            selected[chunk] = True
            flat[chunk] = rows(selected.view(batch, length)).sum(-1)
    return Jumps(exit_rate, rows)


def leap(x: Tensor, jumps: Jumps, length: Tensor, decoding: Decoding, generator: torch.Generator | None) -> Tensor:
    """A categorical tau-leap: each position jumps once with probability 1 - exp(-length exit_rate), to y in
    proportion to its rate. x: (B, L) long; length: (B,) float (the time span, with sigma folded into jumps)."""
    probability = -torch.expm1(-length.double()[:, None] * jumps.exit_rate)
    return apply_jumps(x, probability, jumps, decoding, generator)


class _TwoStageSampler(Sampler):
    """Shared stage 1 and bookkeeping of the theta-methods; subclasses give the stage-2 rates."""

    theta_range: tuple[float, float, bool]  # (low, high, high included)

    def __init__(
        self,
        process: ctmc.ForwardProcess,
        steps: int = 128,
        eps: float = 1e-5,
        *,
        theta: float = 0.5,
        **options: object,
    ) -> None:
        super().__init__(process, steps, eps, **options)
        low, high, closed = self.theta_range
        if not isinstance(theta, (int, float)) or not (low < theta < high or (closed and theta == high)):
            rule = f"({low}, {high}]" if closed else f"({low}, {high})"
            raise ValueError(f"theta must be a number in {rule}, got {theta!r}; 0.5 is the usual choice")
        self.theta = float(theta)

    def stage_two(
        self,
        x: Tensor,
        x_star: Tensor,
        rates_t: Jumps,
        rates_rho: Jumps,
        sigma_t: Tensor,
        sigma_rho: Tensor,
        delta: Tensor,
        generator: torch.Generator | None,
    ) -> Tensor:
        raise NotImplementedError

    def advance(
        self,
        evaluate: Callable[[Tensor, Tensor, Tensor | None], ModelOutput],
        x: Tensor,
        t: Tensor,
        s: Tensor,
        query: Tensor,
        generator: torch.Generator | None,
        **options: object,
    ) -> Tensor:
        """x_s from x_t (B, L): stage 1 to rho = t - theta (t - s), a second model call at (x*, rho), stage 2."""
        rate_matrix = self.process.rate_matrix
        delta = (t - s).double()
        rho = t - self.theta * (t - s)
        sigma_t, sigma_rho = self.process.sigma(t).double(), self.process.sigma(rho).double()
        rates_t = reverse_jumps(rate_matrix, evaluate(x, query, self.needed(x)), x)
        x_star = leap(x, rates_t, self.theta * delta * sigma_t, self.decoding, generator)
        rates_rho = reverse_jumps(rate_matrix, evaluate(x_star, rho, self.needed(x_star)), x_star)
        return self.stage_two(x, x_star, rates_t, rates_rho, sigma_t, sigma_rho, delta, generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.process!r}, steps={self.steps}, eps={self.eps}, theta={self.theta})"


class TrapezoidalSampler(_TwoStageSampler):
    """The theta-trapezoidal method (second order; Ren et al. 2025): two network calls per step.

    theta: the fraction of the step taken by stage 1, in (0, 1) (default 1/2); other options as
    `samplers.Sampler`. NFE = 2 * steps (+ 1 for the final denoising step).
    """

    name = "trapezoidal"
    theta_range = (0.0, 1.0, False)

    def coefficients(self) -> tuple[float, float]:
        """(alpha_1, alpha_2) = (1, (1 - theta)^2 + theta^2) / (2 theta (1 - theta))."""
        theta = self.theta
        denominator = 2.0 * theta * (1.0 - theta)
        return 1.0 / denominator, ((1.0 - theta) ** 2 + theta**2) / denominator

    def stage_two(self, x, x_star, rates_t, rates_rho, sigma_t, sigma_rho, delta, generator):
        """Tau-leap of (1 - theta) Delta from x* with (alpha_1 R_rho(x*) - alpha_2 R_t(x))_+."""
        alpha_1, alpha_2 = self.coefficients()
        terms = [(alpha_1 * sigma_rho, rates_rho), (-alpha_2 * sigma_t, rates_t)]
        rates = combine_jumps(terms, x_star, self.process.num_states)
        return leap(x_star, rates, (1.0 - self.theta) * delta, self.decoding, generator)


class RK2Sampler(_TwoStageSampler):
    """The theta-RK-2 method (Ren et al. 2025): two network calls per step.

    theta: the fraction of the step at which the rates are re-evaluated, in (0, 1] (default 1/2); other options
    as `samplers.Sampler`. NFE = 2 * steps (+ 1 for the final denoising step).
    """

    name = "rk2"
    theta_range = (0.0, 1.0, True)

    def stage_two(self, x, x_star, rates_t, rates_rho, sigma_t, sigma_rho, delta, generator):
        """Tau-leap of Delta from x with ((1 - 1/(2 theta)) R_t(x) + 1/(2 theta) R_rho(x*))_+."""
        weight = 1.0 / (2.0 * self.theta)
        terms = [((1.0 - weight) * sigma_t, rates_t), (weight * sigma_rho, rates_rho)]
        rates = combine_jumps(terms, x, self.process.num_states)
        return leap(x, rates, delta, self.decoding, generator)
