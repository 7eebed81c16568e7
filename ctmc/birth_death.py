"""The ordinal birth-death chain on its closed form: the cosine (DCT-II) eigenbasis, applied by FFT.

State i jumps to i - 1 and i + 1 at rate `rate` (reflecting ends). Q is `rate` times the negated Laplacian of
the path graph 0 - 1 - ... - (n-1) with Neumann ends; it is symmetric with the orthonormal eigenvectors and
eigenvalues (Strang 1999, "The discrete cosine transform", DCT-II)

    v_k(j) = c_k cos(pi k (2j + 1) / (2n)),  c_0 = sqrt(1/n), c_k = sqrt(2/n);   lambda_k = -2 rate (1 - cos(pi k / n)),

so p P(t) = sum_k e^{lambda_k t} <p, v_k> v_k = DCT-III(e^{lambda t} * DCT-II(p)). Both transforms are applied
with one FFT of length 2n (O(n log n) per row), so no n x n matrix is ever formed; a row of P(t) is the
transform of e^{lambda t} * v(x). Over time t a state spreads like a discretised heat kernel of variance about
2 rate t; this is the banded, Gaussian-like chain used by tau-leaping for ordinal data (Campbell et al. 2022).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ctmc.rate_matrix import RateMatrix


class BirthDeath(RateMatrix):
    """The ordinal birth-death chain on `num_states` states with jump rate `rate` to each neighbour."""

    def __init__(self, num_states: int, rate: float = 1.0) -> None:
        if not isinstance(num_states, int) or isinstance(num_states, bool) or num_states < 2:
            raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
        if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < math.inf):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        self.num_states = num_states
        self.rate = float(rate)

    ordinal = True  # the states are ordered values

    # ---- the eigenbasis ------------------------------------------------------------------------------------
    def eigenvalues(self, device: torch.device | str | None = None) -> Tensor:
        """lambda_k = -2 rate (1 - cos(pi k / n)), k = 0 .. n - 1: (n,) float64."""
        k = torch.arange(self.num_states, dtype=torch.float64, device=device)
        return -2.0 * self.rate * (1.0 - torch.cos(math.pi * k / self.num_states))

    def _basis_at(self, x: Tensor) -> Tensor:
        """v_k(x) for every k: x.shape + (n,) float64 (the row x of the DCT-II matrix)."""
        n = self.num_states
        k = torch.arange(n, dtype=torch.float64, device=x.device)
        norm = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64, device=x.device)
        norm[0] = math.sqrt(1.0 / n)
        return norm * torch.cos(math.pi * k * (2 * x.double()[..., None] + 1) / (2 * n))

    def _forward_transform(self, p: Tensor) -> Tensor:
        """Orthonormal DCT-II along the last dimension: <p, v_k> for every k. p: (..., n) float64."""
        n = self.num_states
        spectrum = torch.fft.fft(torch.cat([p, p.flip(-1)], dim=-1))[..., :n]  # = 2 e^{i pi k / 2n} sum_j p_j cos
        k = torch.arange(n, dtype=torch.float64, device=p.device)
        coefficients = (spectrum * torch.exp(-1j * math.pi * k / (2 * n))).real / 2
        norm = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64, device=p.device)
        norm[0] = math.sqrt(1.0 / n)
        return coefficients * norm

    def _inverse_transform(self, a: Tensor) -> Tensor:
        """sum_k a_k v_k(j) for every j (orthonormal DCT-III, the inverse of `_forward_transform`). a: (..., n)."""
        n = self.num_states
        k = torch.arange(n, dtype=torch.float64, device=a.device)
        norm = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64, device=a.device)
        norm[0] = math.sqrt(1.0 / n)
        z = (a * norm) * torch.exp(1j * math.pi * k / (2 * n))
        return (torch.fft.ifft(z, n=2 * n) * (2 * n)).real[..., :n]

    def _evolve(self, coefficients: Tensor, t: Tensor) -> Tensor:
        """Inverse transform of e^{lambda t} * coefficients; t: coefficients.shape[:-1]. Returns float64."""
        growth = torch.exp(self.eigenvalues(coefficients.device) * t.double()[..., None])
        return self._inverse_transform(coefficients * growth)

    # ---- the generator and the transition ------------------------------------------------------------------
    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        off = torch.full((self.num_states - 1,), self.rate, dtype=dtype, device=device)
        q = torch.diag(off, 1) + torch.diag(off, -1)
        return q - torch.diag(q.sum(dim=1))

    def _transition(self, t: Tensor) -> Tensor:
        states = torch.arange(self.num_states, device=t.device)
        return self._transition_from(states.expand(*t.shape, -1), t[..., None].expand(*t.shape, self.num_states))

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        # P(t)[x, y] = sum_k e^{lambda_k t} v_k(x) v_k(y), clamped at 0 (rounding).
        return self._evolve(self._basis_at(x), t).clamp_min(0.0).to(t.dtype)

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        return self._transition_from(x, t)  # Q, hence P(t), is symmetric

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        # Also used at negative t (the analytic step's backward factor s exp(-delta Q)), where no clamp applies.
        return self._evolve(self._forward_transform(p.double()), t).to(p.dtype)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        n, rate = self.num_states, self.rate
        out = torch.zeros(*x.shape, n + 2, dtype=torch.float64, device=x.device)  # padded by one state each side
        out.scatter_(-1, x[..., None], rate * (x > 0).double()[..., None])  # to x - 1 (padded index x)
        out.scatter_(-1, x[..., None] + 2, rate * (x < n - 1).double()[..., None])  # to x + 1
        out = out[..., 1:-1].contiguous()
        return out.scatter_(-1, x[..., None], -self._exit_rate(x)[..., None])

    def _incoming_rates(self, x: Tensor) -> Tensor:
        return self._outgoing_rates(x)  # Q is symmetric

    def _exit_rate(self, x: Tensor) -> Tensor:
        return self.rate * ((x > 0).double() + (x < self.num_states - 1).double())

    def _reachable(self, x0: Tensor, x_t: Tensor) -> Tensor:
        return torch.ones(x0.shape, dtype=torch.bool, device=x0.device)

    def _limit_law(self, device: torch.device) -> Tensor:
        return torch.full((self.num_states,), 1.0 / self.num_states, dtype=torch.float64, device=device)

    def _sample_limit(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        return torch.randint(0, self.num_states, shape, device=device, generator=generator)

    # Reverse rates: Q[y, x] = rate for y = x +- 1, so only the two neighbours' scores matter.
    def _neighbour_scores(self, x: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        width = score.shape[-1]
        below = score.gather(-1, (x - 1).clamp(0, width - 1)[..., None]).squeeze(-1).double() * (x > 0)
        above = score.gather(-1, (x + 1).clamp(0, width - 1)[..., None]).squeeze(-1).double()
        return below, above * (x < self.num_states - 1)

    def _reverse_exit_rate(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        below, above = self._neighbour_scores(x, score)
        rate = self.rate * (below + above)
        return rate if scale is None else rate * scale.double()

    def _reverse_rates_to(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        rates = self._incoming_rates(x).clamp_min(0.0) * score.double()
        return rates if scale is None else rates * scale.double()[..., None]

    def __repr__(self) -> str:
        return f"BirthDeath(num_states={self.num_states}, rate={self.rate})"
