"""The uniform rate matrix: every state jumps to a uniformly drawn state.

Normalisation (SEDD's, Lou et al. 2024): Q = (1/n) 1 1^T - I, i.e. rate 1/n from i to each j != i and exit
rate (n - 1)/n. Then P(t) = e^{-t} I + (1 - e^{-t}) (1/n) 1 1^T: with probability 1 - e^{-t} the state has
been redrawn uniformly from all n states (itself included). D3PM's one-step matrix (1 - beta) I + beta 1 1^T / n
is P(tau) with e^{-tau} = 1 - beta (see `ctmc.DiscreteTimeChain`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.rate_matrix import RateMatrix


class Uniform(RateMatrix):
    """Q = (1/n) 1 1^T - I on n states; closed-form transitions that never form an n x n matrix."""

    def __init__(self, num_states: int) -> None:
        if not isinstance(num_states, int) or isinstance(num_states, bool) or num_states < 2:
            raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
        self.num_states = num_states

    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        n = self.num_states
        return torch.full((n, n), 1.0 / n, dtype=dtype, device=device) - torch.eye(n, dtype=dtype, device=device)

    def _transition(self, t: Tensor) -> Tensor:
        n = self.num_states
        eye = torch.eye(n, dtype=t.dtype, device=t.device)
        stay = torch.exp(-t)[..., None, None]
        move = (-torch.expm1(-t) / n)[..., None, None]
        return stay * eye + move

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        # P(t)[x, y] = (1 - e^{-t}) / n + e^{-t} [y = x]
        out = (-torch.expm1(-t) / self.num_states)[..., None].repeat_interleave(self.num_states, dim=-1)
        return out.scatter_add_(-1, x[..., None], torch.exp(-t)[..., None])

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        return self._transition_from(x, t)  # P(t) is symmetric

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        return torch.exp(-t)[..., None] * p + (-torch.expm1(-t))[..., None] * p.sum(-1, keepdim=True) / self.num_states

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        redraw = u < -torch.expm1(-t.double())
        fresh = torch.randint(0, self.num_states, x.shape, device=x.device, generator=generator)
        return torch.where(redraw, fresh, x)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        n = self.num_states
        out = torch.full((*x.shape, n), 1.0 / n, dtype=torch.float64, device=x.device)
        return out.scatter_(-1, x[..., None], -(n - 1) / n)

    def _incoming_rates(self, x: Tensor) -> Tensor:
        return self._outgoing_rates(x)  # Q is symmetric
