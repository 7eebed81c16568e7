"""Noise schedules: the rate sigma(t) of a time-inhomogeneous chain Q_t = sigma(t) Q, and its integral.

Diffusion time runs from 0 (data) to 1 (noise). `total(t)` is sigma-bar(t) = integral_0^t sigma(s) ds, so
that the forward transition from time s to time t is exp((total(t) - total(s)) Q), and `inverse_total`
maps a total noise level back to the time at which it is reached.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ctmc.checks import as_time


class NoiseSchedule(ABC):
    """A rate sigma(t) >= 0 on t in [0, 1] with total(0) = 0 (except Geometric(start_at_sigma_min=True), SEDD's
    verbatim); all methods are differentiable in t."""

    def sigma(self, t: Tensor | float) -> Tensor:
        """The noise rate sigma(t) = d total / dt. t: (...) float in [0, 1]. Returns (...)."""
        return self._sigma(as_time(t, upper=1.0))

    def total(self, t: Tensor | float) -> Tensor:
        """The total noise sigma-bar(t) = integral_0^t sigma(s) ds. t: (...) float in [0, 1]. Returns (...)."""
        return self._total(as_time(t, upper=1.0))

    def inverse_total(self, total: Tensor | float) -> Tensor:
        """The time t in [0, 1] with total(t) = `total`. total: (...) float in [0, total(1)]."""
        total = as_time(total, name="total")
        # The bound total(1) is evaluated in total's own dtype: a float32 bound can round below a float64 total(1).
        upper = float(self._total(torch.ones((), dtype=total.dtype)))
        total = as_time(total, name="total", upper=upper)
        lower = float(self._total(torch.zeros((), dtype=total.dtype)))  # 0, except Geometric(start_at_sigma_min)
        if lower > 0 and bool((total < lower).any()):
            raise ValueError(
                f"total must be >= total(0) = {lower:.6g} (this schedule starts above 0), got min "
                f"{total.min().item():.6g}; pass totals in [total(0), total(1)]"
            )
        return self._inverse_total(total)

    @abstractmethod
    def _sigma(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def _total(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def _inverse_total(self, total: Tensor) -> Tensor: ...


class LogLinear(NoiseSchedule):
    """SEDD's log-linear schedule: total(t) = -log(1 - (1 - eps) t), sigma(t) = (1 - eps) / (1 - (1 - eps) t).

    For the absorbing chain the probability of still being unmasked is e^{-total(t)} = 1 - (1 - eps) t,
    linear in t: the linear masking schedule of MDLM/RADD, up to `eps`, which keeps total(1) = -log(eps)
    finite (a fraction eps of tokens is still clean at t = 1). It must lie in (0, 1).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not (isinstance(eps, (int, float)) and 0.0 < eps < 1.0):
            raise ValueError(f"eps must be a float in (0, 1), got {eps!r}; eps = 0 would make total(1) infinite")
        self.eps = float(eps)

    def _sigma(self, t: Tensor) -> Tensor:
        slope = 1.0 - self.eps
        return slope / (1.0 - slope * t)

    def _total(self, t: Tensor) -> Tensor:
        return -torch.log1p(-(1.0 - self.eps) * t)

    def _inverse_total(self, total: Tensor) -> Tensor:
        return -torch.expm1(-total) / (1.0 - self.eps)

    def __repr__(self) -> str:
        return f"LogLinear(eps={self.eps})"


class Geometric(NoiseSchedule):
    """SEDD's geometric schedule, with its rate sigma(t) = sigma_min^{1-t} sigma_max^t log(sigma_max / sigma_min).

    total(t) = sigma_min ((sigma_max / sigma_min)^t - 1), the exact integral from 0, so that total(0) = 0 and
    time 0 is clean data. (SEDD's code uses sigma_min^{1-t} sigma_max^t, which is this plus the constant
    sigma_min; with the usual sigma_min = 1e-4 the difference is negligible, but it would leave noise at t = 0.)

    start_at_sigma_min=True gives SEDD's total verbatim, total(t) = sigma_min^{1-t} sigma_max^t (GeometricNoise in
    SEDD's noise_lib.py; the rate is the same): total(0) = sigma_min, so x_0 is already noised by sigma_min and
    inverse_total accepts totals in [sigma_min, sigma_max]. Use it to run a released SEDD model with the noise
    levels it was trained on (models.from_pretrained does); the losses then leave out the t = 0 term, as SEDD's do.
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0, start_at_sigma_min: bool = False) -> None:
        if not (isinstance(sigma_min, (int, float)) and isinstance(sigma_max, (int, float))):
            raise TypeError("sigma_min and sigma_max must be numbers")
        if not (0.0 < sigma_min < sigma_max < math.inf):
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if not isinstance(start_at_sigma_min, bool):
            raise TypeError(f"start_at_sigma_min must be a bool, got {type(start_at_sigma_min).__name__}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.start_at_sigma_min = start_at_sigma_min
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def _sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio) * self._log_ratio

    def _total(self, t: Tensor) -> Tensor:
        if self.start_at_sigma_min:
            return self.sigma_min * torch.exp(t * self._log_ratio)
        return self.sigma_min * torch.expm1(t * self._log_ratio)

    def _inverse_total(self, total: Tensor) -> Tensor:
        if self.start_at_sigma_min:
            return torch.log(total / self.sigma_min) / self._log_ratio
        return torch.log1p(total / self.sigma_min) / self._log_ratio

    def __repr__(self) -> str:
        start = ", start_at_sigma_min=True" if self.start_at_sigma_min else ""
        return f"Geometric(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}{start})"


class PiecewiseLinear(NoiseSchedule):
    """total(t) linear between the knots total(i / T) = totals[i], i = 0 .. T (totals[0] = 0, increasing).

    The cumulative noise of a discrete-time chain as a continuous schedule: `ctmc.DiscreteTimeChain.schedule`
    (D3PM, Austin et al. 2021) gives one whose step i runs over [(i - 1) / T, i / T]. sigma is constant on each
    step: T (totals[i] - totals[i - 1]).
    """

    def __init__(self, totals: Tensor | list[float]) -> None:
        totals = torch.as_tensor(totals, dtype=torch.float64).flatten()
        if totals.numel() < 2 or not bool(torch.isfinite(totals).all()):
            raise ValueError("totals must hold T + 1 >= 2 finite knots total(0) = 0 < total(1 / T) < ... < total(1)")
        if totals[0] != 0 or not bool((totals[1:] > totals[:-1]).all()):
            raise ValueError("totals must start at 0 and increase strictly: time 0 is clean data")
        self.totals = totals
        self.num_steps = totals.numel() - 1

    def _step(self, t: Tensor) -> tuple[Tensor, Tensor]:
        scaled = t * self.num_steps
        step = scaled.floor().long().clamp(0, self.num_steps - 1)
        return step, scaled - step

    def _sigma(self, t: Tensor) -> Tensor:
        totals = self.totals.to(t.device)
        step, _ = self._step(t)
        return ((totals[step + 1] - totals[step]) * self.num_steps).to(t.dtype)

    def _total(self, t: Tensor) -> Tensor:
        totals = self.totals.to(t.device)
        step, fraction = self._step(t)
        return (totals[step] + fraction * (totals[step + 1] - totals[step])).to(t.dtype)

    def _inverse_total(self, total: Tensor) -> Tensor:
        totals = self.totals.to(total.device)
        step = (torch.searchsorted(totals, total.double().contiguous(), right=True) - 1).clamp(0, self.num_steps - 1)
        fraction = (total - totals[step]) / (totals[step + 1] - totals[step])
        return ((step + fraction) / self.num_steps).to(total.dtype)

    def __repr__(self) -> str:
        return f"PiecewiseLinear(num_steps={self.num_steps})"
