"""The time-inhomogeneous forward process: a rate matrix Q driven by a noise schedule sigma(t).

Q_t = sigma(t) Q. Because every Q_t is a multiple of the same Q, they commute and the transition from time s
to time t is P(s, t) = exp((total(t) - total(s)) Q), where total is the schedule's integral. The marginal
of one token is x_t | x_0 ~ P(0, t)[x_0, :].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.checks import as_time, broadcast_time, check_states
from ctmc.rate_matrix import RateMatrix
from ctmc.schedules import NoiseSchedule


class ForwardProcess:
    """Compose a `RateMatrix` and a `NoiseSchedule`; time runs from 0 (data) to 1 (noise)."""

    def __init__(self, rate_matrix: RateMatrix, schedule: NoiseSchedule) -> None:
        if not isinstance(rate_matrix, RateMatrix):
            raise TypeError(f"rate_matrix must be a ctmc.RateMatrix, got {type(rate_matrix).__name__}")
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a ctmc.NoiseSchedule, got {type(schedule).__name__}")
        self.rate_matrix = rate_matrix
        self.schedule = schedule

    @property
    def num_states(self) -> int:
        """The number of states n of each token (vocabulary plus mask for the absorbing chain)."""
        return self.rate_matrix.num_states

    def sigma(self, t: Tensor | float) -> Tensor:
        """The rate sigma(t) multiplying Q at time t. t: (...) in [0, 1]."""
        return self.schedule.sigma(t)

    def total(self, t: Tensor | float) -> Tensor:
        """The total noise sigma-bar(t) = integral_0^t sigma. t: (...) in [0, 1]."""
        return self.schedule.total(t)

    def generator(self, t: Tensor | float) -> Tensor:
        """Q_t = sigma(t) Q as a dense (..., n, n) float64 tensor (for small n and for tests)."""
        sigma = self.sigma(t)
        return sigma.to(torch.float64)[..., None, None] * self.rate_matrix.matrix(device=sigma.device)

    def transition(self, s: Tensor | float, t: Tensor | float) -> Tensor:
        """P(s, t) = exp((total(t) - total(s)) Q) for 0 <= s <= t <= 1. Returns broadcast(s, t).shape + (n, n)."""
        s, t = as_time(s, "s", upper=1.0), as_time(t, upper=1.0)
        if bool((s > t).any()):
            raise ValueError("s must be <= t: the forward transition runs from time s to a later time t")
        return self.rate_matrix.transition((self.total(t) - self.total(s)).clamp_min(0.0))

    def marginal(self, x0: Tensor, t: Tensor | float) -> Tensor:
        """The law of x_t given x_0: P(0, t)[x0, :]. x0: (...) long; t broadcastable to x0. Returns (..., n)."""
        x0 = check_states(x0, self.num_states, "x0")
        t = broadcast_time(x0, as_time(t, upper=1.0))
        return self.rate_matrix.transition_from(x0, self.total(t))

    def sample(self, x0: Tensor, t: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_t ~ P(0, t)[x0, :] independently per token. x0: (...) long; t broadcastable. Returns (...) long."""
        x0 = check_states(x0, self.num_states, "x0")
        t = broadcast_time(x0, as_time(t, upper=1.0))
        return self.rate_matrix.sample(x0, self.total(t), generator)

    def __repr__(self) -> str:
        return f"ForwardProcess({self.rate_matrix!r}, {self.schedule!r})"
