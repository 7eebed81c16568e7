"""The discrete-time (D3PM) view of a chain: one-step matrices Q_i, cumulative Q-bar_i and the posterior.

D3PM (Austin et al. 2021) uses stochastic one-step matrices, q(x_i | x_{i-1}) =
Cat(x_{i-1} Q_i), with a beta schedule: uniform Q_i = (1 - beta_i) I + beta_i 1 1^T / n and absorbing
Q_i = (1 - beta_i) I + beta_i 1 e_mask^T. Both are exactly exp(tau_i Q) for our `Uniform` and `Absorbing`
generators with e^{-tau_i} = 1 - beta_i, i.e. tau_i = -log(1 - beta_i). All Q_i then commute, so
Q-bar_i = Q_1 ... Q_i = exp((tau_1 + ... + tau_i) Q). This class builds the discrete chain from any
`RateMatrix` in this way (for `Dense`, Q_i = exp(tau_i Q) is the natural generalisation).

Steps are numbered 1..T; Q-bar_0 = I. The posterior is Bayes' rule,
q(x_{i-1} | x_i, x_0) proportional to (x_i Q_i^T) * (x_0 Q-bar_{i-1}).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.checks import broadcast_time, check_int, check_states
from ctmc.forward_process import ForwardProcess
from ctmc.rate_matrix import RateMatrix
from ctmc.schedules import PiecewiseLinear

# An infinite step time (beta = 1) is capped where e^{-t} underflows to exactly 0 in float64.
TIME_CAP = 1e4


class DiscreteTimeChain:
    """A D3PM chain with T steps: `betas` (T,) in (0, 1] are the per-step corruption probabilities."""

    def __init__(self, rate_matrix: RateMatrix, betas: Tensor) -> None:
        if not isinstance(rate_matrix, RateMatrix):
            raise TypeError(f"rate_matrix must be a ctmc.RateMatrix, got {type(rate_matrix).__name__}")
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a 1-d tensor with one entry per step, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]: beta_i is the probability of corrupting a token at step i")
        self.rate_matrix = rate_matrix
        self.betas = betas
        step_times = -torch.log1p(-betas)  # tau_i; +inf where beta_i = 1
        # Indexed by the step number i = 1..T (entry 0 is an unused tau_0 = 0), like the cumulative times.
        self._step_times = torch.cat([torch.zeros(1, dtype=torch.float64), step_times])
        self._cumulative_times = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(step_times, 0)])

    @classmethod
    def from_process(cls, process: ForwardProcess, num_steps: int) -> DiscreteTimeChain:
        """The T-step chain of a continuous process: step i covers [(i - 1) / T, i / T], so that
        tau-bar_i = total(i / T) and beta_i = 1 - exp(-(total(i / T) - total((i - 1) / T)))."""
        check_int("num_steps", num_steps, 1)
        totals = process.total(torch.arange(num_steps + 1, dtype=torch.float64) / num_steps)
        return cls(process.rate_matrix, -torch.expm1(-(totals[1:] - totals[:-1])))

    def schedule(self) -> PiecewiseLinear:
        """The continuous schedule with total(i / T) = tau-bar_i (capped at TIME_CAP), linear in between, so
        that `ForwardProcess(chain.rate_matrix, chain.schedule())` at time i / T is this chain at step i."""
        return PiecewiseLinear(self._cumulative_times.clamp_max(TIME_CAP))

    @classmethod
    def linear_mutual_information(cls, rate_matrix: RateMatrix, num_steps: int) -> DiscreteTimeChain:
        """The absorbing-chain schedule beta_i = 1 / (T - i + 1) of D3PM (Q-bar_T is fully masked)."""
        steps = torch.arange(1, num_steps + 1, dtype=torch.float64)
        return cls(rate_matrix, 1.0 / (num_steps - steps + 1.0))

    @property
    def num_steps(self) -> int:
        """T, the number of steps."""
        return self.betas.numel()

    @property
    def num_states(self) -> int:
        return self.rate_matrix.num_states

    def _check_step(self, i: Tensor | int, lowest: int) -> Tensor:
        i = torch.as_tensor(i)
        if i.is_floating_point() or i.dtype == torch.bool:
            raise TypeError(f"step i must be an integer (tensor), got {i.dtype}")
        if bool((i < lowest).any()) or bool((i > self.num_steps).any()):
            raise ValueError(f"step i must lie in [{lowest}, {self.num_steps}], got {i.min().item()}..{i.max().item()}")
        return i.long()

    def _time(self, times: Tensor, i: Tensor) -> Tensor:
        # Map the step to its integrated time; an infinite time (beta = 1) is capped where exp(-t) is 0.
        return times.to(i.device)[i].clamp_max(TIME_CAP)

    def step_time(self, i: Tensor | int) -> Tensor:
        """tau_i = -log(1 - beta_i), the noise of step i (capped at TIME_CAP). i: (...) long in [1, T]. float64."""
        i = self._check_step(i, 1)
        return self._time(self._step_times, i)

    def cumulative_time(self, i: Tensor | int) -> Tensor:
        """tau-bar_i = tau_1 + ... + tau_i (tau-bar_0 = 0, capped at TIME_CAP). i: (...) long in [0, T]. float64."""
        i = self._check_step(i, 0)
        return self._time(self._cumulative_times, i)

    def step_matrix(self, i: Tensor | int) -> Tensor:
        """Q_i = exp(tau_i Q), the one-step stochastic matrix. i: (...) long in [1, T]. Returns (..., n, n)."""
        i = self._check_step(i, 1)
        return self.rate_matrix.transition(self._time(self._step_times, i))

    def cumulative_matrix(self, i: Tensor | int) -> Tensor:
        """Q-bar_i = Q_1 ... Q_i (Q-bar_0 = I). i: (...) long in [0, T]. Returns (..., n, n)."""
        i = self._check_step(i, 0)
        return self.rate_matrix.transition(self._time(self._cumulative_times, i))

    def sample(self, x0: Tensor, i: Tensor | int, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_i ~ Cat(x_0 Q-bar_i). x0: (...) long; i broadcastable to x0 in [0, T]. Returns (...) long."""
        x0 = check_states(x0, self.num_states, "x0")
        i = self._check_step(i, 0).to(x0.device)
        times = broadcast_time(x0, self._time(self._cumulative_times, i), name="i")
        return self.rate_matrix.sample(x0, times, generator)

    def posterior(self, x_t: Tensor, x0: Tensor, i: Tensor | int) -> Tensor:
        """q(x_{i-1} | x_i, x_0) = normalise((x_i Q_i^T) * (x_0 Q-bar_{i-1})).

        x_t: (...) long, the state x_i; x0: (...) long ids, or (..., n) float probabilities of x_0 (then the
        result is D3PM's model posterior sum_{x_0} q(x_{i-1}, x_i | x_0) p(x_0) normalised, their eq. 5);
        i: (...) long in [1, T], broadcastable to x_t. Returns (..., n) in float64 (ids) or x0's dtype.
        """
        x_t = check_states(x_t, self.num_states, "x_t")
        i = self._check_step(i, 1).to(x_t.device)
        step = broadcast_time(x_t, self._time(self._step_times, i), name="i")
        before = broadcast_time(x_t, self._time(self._cumulative_times, i - 1), name="i")
        if x0.is_floating_point():
            if x0.shape != (*x_t.shape, self.num_states):
                raise ValueError(
                    f"x0 probabilities must have shape {(*x_t.shape, self.num_states)}, got {tuple(x0.shape)}"
                )
        else:
            x0 = check_states(x0, self.num_states, "x0")
            if x0.shape != x_t.shape:
                raise ValueError(f"x0 and x_t must have the same shape, got {tuple(x0.shape)} and {tuple(x_t.shape)}")
        return self.rate_matrix.posterior(x_t, x0, step, before)
