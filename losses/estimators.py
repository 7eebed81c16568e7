"""A low-variance Monte-Carlo estimator of the absorbing chain's negative ELBO: sample the masked count, not t.

Every `DiffusionLoss` on the absorbing chain estimates N = E_{t ~ p(t)} E_{x_t | x0, t} [loss(x0, x_t, t)],
p(t) the loss's time law (`time_density`). Only masked positions contribute, and the loss weights them by
about 1/t while about t L are masked: one draw at small t with one or two masked tokens carries hundreds of
nats, so the per-sequence variance is (log-)divergent as t -> 0.

Write lambda(t) = 1 - e^{-sigma-bar(t)} (the masked fraction, increasing) and m = |S| the number of masked
positions of x_t (a uniform subset S given m). Under the forward process,
q(t, S) = p(t) lambda^m (1 - lambda)^{L-m}. The proposal of this module draws (Hoogeboom et al. 2022 and Ou et al.
2024 write the same bound in this any-order form)

    m ~ U{1..L} (stratified),   lambda | m ~ Beta(m, L - m + 1) truncated to (0, lambda_1],   S uniform of size m,

lambda_1 = lambda(1), t = lambda^{-1}; its density in (t, S) is
(1/L) m lambda^{m-1} (1 - lambda)^{L-m} lambda'(t) / F_m, with F_m = P(Beta(m, L-m+1) <= lambda_1)
= P(Binomial(L, lambda_1) >= m) (B(m, L-m+1) = 1 / (m C(L, m))). The importance weight target / proposal is

    w(t, m) = p(t) lambda(t) L F_m / (lambda'(t) m),

and E_proposal[w loss] = N exactly (the event m = 0 is never drawn: there the absorbing losses are 0). For the
time-conditioned score entropy lambda' / lambda = sigma r cancels the loss's 1/t weight; for the RADD losses
(t-DCE, lambda-DCE, MDLM) w loss = (L F_m / m) sum_{i in S} -log p_theta(x0^i | x_t) for every t, the
any-order form whose weights (L / m) P(Binomial(L, lambda_1) >= m) are bounded by L.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import ctmc

BISECTION_STEPS = 64  # float64 bisection on (0, lambda_1]: resolution lambda_1 / 2^64, below float64 spacing


@dataclass
class NoiseDraw:
    """Noisy inputs and their importance weights. t: (N,) float32 in (0, 1]; x_t: (N, L) long; weight: (N,) float64."""

    t: Tensor
    x_t: Tensor
    weight: Tensor


def log_binomial_terms(length: int, probability: Tensor) -> Tensor:
    """log P(Binomial(L, p) = k) for k = 0..L. probability: (...) float64 in [0, 1]. Returns (..., L + 1)."""
    k = torch.arange(length + 1, dtype=torch.float64, device=probability.device)
    log_choose = torch.lgamma(torch.tensor(length + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1) - torch.lgamma(
        length - k + 1
    )
    p = probability[..., None]
    return log_choose + torch.xlogy(k, p) + torch.xlogy(length - k, 1.0 - p)


def binomial_upper_tail(length: int, probability: Tensor, counts: Tensor) -> Tensor:
    """P(Binomial(L, p) >= m) = P(Beta(m, L - m + 1) <= p), summed in log space over k = m..L (no cancellation).

    probability: (...) float64 in [0, 1]; counts: broadcastable to it, long in [1, L]. Returns the broadcast
    shape, float64.
    """
    probability, counts = torch.broadcast_tensors(probability.double(), counts.to(probability.device))
    terms = log_binomial_terms(length, probability)
    k = torch.arange(length + 1, device=probability.device)
    terms = torch.where(k >= counts[..., None], terms, torch.full_like(terms, -torch.inf))
    return torch.logsumexp(terms, dim=-1).exp()


def truncated_beta_quantile(u: Tensor, counts: Tensor, length: int, upper: float) -> Tensor:
    """The u-quantile of Beta(m, L - m + 1) truncated to (0, upper], by bisection on its CDF (float64).

    The CDF of Beta(m, L - m + 1) at x is P(Binomial(L, x) >= m) (`binomial_upper_tail`), so the quantile
    solves tail(x) = u tail(upper). u: (N,) in [0, 1]; counts: (N,) long in [1, L]. Returns (N,) float64.
    """
    u = u.double()
    top = torch.full_like(u, float(upper))
    target = u * binomial_upper_tail(length, top, counts)
    low, high = torch.zeros_like(u), top
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        below = binomial_upper_tail(length, middle, counts) < target
        low = torch.where(below, middle, low)
        high = torch.where(below, high, middle)
    return high


def stratified_counts(num_draws: int, length: int, generator: torch.Generator | None = None) -> Tensor:
    """(K,) masked counts m_k = 1 + floor(L (u + k) / K), one shared u ~ U[0, 1): every m in 1..L equally often.

    Each m_k alone is not uniform, but the average over k of any f(m_k) has expectation (1/L) sum_m f(m); with
    K a multiple of L every count appears exactly K / L times.
    """
    shift = torch.rand((), dtype=torch.float64, generator=generator)
    strata = (shift + torch.arange(num_draws, dtype=torch.float64)) / num_draws
    return (strata * length).floor().long().clamp(max=length - 1) + 1


class MaskedCountEstimator:
    """Importance sampler of (t, x_t) over the masked count for `ctmc.Absorbing` processes (module docstring).

    `sample(x0, counts, loss)` gives the noisy inputs and weights; the estimate of the negative ELBO of x0 is
    weight * loss(network(x_t, sigma-bar(t)), x0, x_t, t), averaged over draws, for any `DiffusionLoss` whose
    time law `loss.time_density` gives.
    """

    def __init__(self, process: ctmc.ForwardProcess) -> None:
        if not isinstance(process, ctmc.ForwardProcess):
            raise TypeError(f"process must be a ctmc.ForwardProcess, got {type(process).__name__}")
        if not process.rate_matrix.score_factorises:
            raise TypeError(
                "MaskedCountEstimator needs the pure absorbing chain (ctmc.Absorbing), got "
                f"{type(process.rate_matrix).__name__}; use the loss's own sample_time for other chains"
            )
        self.process = process

    @property
    def mask_index(self) -> int:
        return self.process.rate_matrix.mask_index

    def masked_fraction(self, t: Tensor) -> Tensor:
        """lambda(t) = 1 - e^{-sigma-bar(t)}, float64."""
        return -torch.expm1(-self.process.total(t.double()))

    def masked_fraction_rate(self, t: Tensor) -> Tensor:
        """lambda'(t) = sigma(t) e^{-sigma-bar(t)}, float64."""
        t = t.double()
        return self.process.sigma(t) * torch.exp(-self.process.total(t))

    def lambda_max(self) -> float:
        """lambda_1 = lambda(1), the largest masked fraction of the schedule."""
        return float(self.masked_fraction(torch.ones((), dtype=torch.float64)))

    def count_weights(self, length: int) -> Tensor:
        """(L,) float64: (L / m) P(Binomial(L, lambda_1) >= m) for m = 1..L, the any-order weights."""
        counts = torch.arange(1, length + 1)
        tail = binomial_upper_tail(length, torch.tensor(self.lambda_max(), dtype=torch.float64), counts)
        return length * tail / counts.double()

    def sample(
        self,
        x0: Tensor,
        counts: Tensor,
        time_density: Callable[[Tensor], Tensor],
        generator: torch.Generator | None = None,
    ) -> NoiseDraw:
        """Draws for rows x0 (N, L) long with masked counts `counts` (N,) long in [1, L] (see the module docstring).

        time_density: t (N,) float64 -> p(t), the density of the loss's time law (`DiffusionLoss.time_density`).
        All uniforms come from `generator` on the CPU; the result is on x0's device.
        """
        rows, length = x0.shape
        counts = counts.to("cpu", torch.long)
        if counts.shape != (rows,) or bool((counts < 1).any()) or bool((counts > length).any()):
            raise ValueError(f"counts must be (N,) = ({rows},) ints in [1, L = {length}], got {counts.tolist()}")
        upper = self.lambda_max()
        fraction = truncated_beta_quantile(
            torch.rand(rows, dtype=torch.float64, generator=generator), counts, length, upper
        )
        schedule = self.process.schedule
        top = float(schedule.total(torch.tensor(1.0, dtype=torch.float64)))
        t = schedule.inverse_total((-torch.log1p(-fraction)).clamp(max=top))
        t = t.clamp(min=torch.finfo(torch.float32).tiny, max=1.0).float()
        order = torch.rand(rows, length, generator=generator).argsort(dim=-1).argsort(dim=-1)
        masked = order < counts[:, None]  # a uniform subset of size m
        x_t = torch.where(masked.to(x0.device), torch.full_like(x0, self.mask_index), x0)
        weight = self.weight(t, counts, length, time_density)
        return NoiseDraw(t.to(x0.device), x_t, weight.to(x0.device))

    def weight(self, t: Tensor, counts: Tensor, length: int, time_density: Callable[[Tensor], Tensor]) -> Tensor:
        """(N,) float64: p(t) lambda(t) L F_m / (lambda'(t) m), F_m = P(Binomial(L, lambda_1) >= m)."""
        t64 = t.double()
        tail = binomial_upper_tail(length, torch.tensor(self.lambda_max(), dtype=torch.float64), counts.cpu())
        ratio = self.masked_fraction(t64) / self.masked_fraction_rate(t64)
        return time_density(t64) * ratio * length * tail / counts.cpu().double()


ESTIMATORS = ("auto", "time", "masked_count")  # the choices of `estimator_for`


def estimator_for(choice: str, process: ctmc.ForwardProcess, name: str = "estimator") -> MaskedCountEstimator | None:
    """The noise estimator a training or validation run asks for by name: "masked_count" (the absorbing chain
    only), "auto" (masked_count on the absorbing chain, else stratified times) or "time"; None means stratified
    times. name: the option, for the one-line error."""
    if choice not in ESTIMATORS:
        raise ValueError(f"model.{name} must be one of {', '.join(ESTIMATORS)}, got {choice!r}")
    absorbing = process.rate_matrix.score_factorises  # the pure absorbing chain
    if choice == "masked_count" and not absorbing:
        raise ValueError(
            f"model.{name}=masked_count needs the absorbing chain (ctmc.Absorbing), got "
            f"{type(process.rate_matrix).__name__}; use {name}=time"
        )
    if choice == "masked_count" or (choice == "auto" and absorbing):
        return MaskedCountEstimator(process)
    return None
