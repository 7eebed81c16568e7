"""The absorbing (masking) rate matrix.

States 0 .. V-1 are the vocabulary and state V (`mask_index`, the last) is [MASK]. Every non-mask state jumps
to the mask at rate 1 and the mask never leaves: Q[i, V] = 1, Q[i, i] = -1 for i < V, Q[V, :] = 0. Then
P(t)[i, i] = e^{-t}, P(t)[i, V] = 1 - e^{-t} for i < V and P(t)[V, V] = 1. This is the transpose of the
column-convention Q^absorb of SEDD/RADD (its row of ones at the bottom is our column of ones on the right).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.rate_matrix import RateMatrix


class Absorbing(RateMatrix):
    """The absorbing chain on `vocab_size + 1` states with the mask at index `vocab_size`."""

    def __init__(self, vocab_size: int) -> None:
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.num_states = vocab_size + 1

    @property
    def num_clean_states(self) -> int:
        """The vocabulary: a clean token is never the mask."""
        return self.vocab_size

    @property
    def mask_index(self) -> int:
        """The index of the [MASK] state: `vocab_size`, the last state."""
        return self.vocab_size

    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        n, mask = self.num_states, self.mask_index
        q = -torch.eye(n, dtype=dtype, device=device)
        q[:, mask] += 1.0
        return q

    def _transition(self, t: Tensor) -> Tensor:
        n, mask = self.num_states, self.mask_index
        stay = torch.exp(-t)[..., None]
        eye = torch.eye(n, dtype=t.dtype, device=t.device)
        out = stay[..., None] * eye
        out[..., :, mask] = -torch.expm1(-t)[..., None]
        out[..., mask, mask] = 1.0
        return out

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        masked = x == self.mask_index
        out = torch.zeros(*x.shape, self.num_states, dtype=t.dtype, device=x.device)
        out.scatter_(-1, x[..., None], torch.where(masked, 1.0, torch.exp(-t)).to(t.dtype)[..., None])
        out[..., self.mask_index] += torch.where(masked, 0.0, -torch.expm1(-t)).to(t.dtype)
        return out

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        # Column x of P(t): e^{-t} at y = x for a token; (1 - e^{-t}, ..., 1 - e^{-t}, 1) for the mask.
        masked = x == self.mask_index
        out = torch.where(masked, -torch.expm1(-t), 0.0).to(t.dtype)[..., None].repeat_interleave(self.num_states, -1)
        out.scatter_(-1, x[..., None], torch.where(masked, 1.0, torch.exp(-t)).to(t.dtype)[..., None])
        return out

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        out = torch.exp(-t)[..., None] * p
        moved = -torch.expm1(-t) * p[..., : self.mask_index].sum(-1)
        out[..., self.mask_index] = p[..., self.mask_index] + moved
        return out

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        return torch.where(u < -torch.expm1(-t.double()), self.mask_index, x)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        masked = (x != self.mask_index).double()
        out = torch.zeros(*x.shape, self.num_states, dtype=torch.float64, device=x.device)
        out.scatter_(-1, x[..., None], -masked[..., None])
        out[..., self.mask_index] += masked
        return out

    def _incoming_rates(self, x: Tensor) -> Tensor:
        # Column x of Q: -1 at y = x for a token; ones (and 0 at the mask) for the mask.
        masked = x == self.mask_index
        out = masked.double()[..., None].repeat_interleave(self.num_states, -1)
        out[..., self.mask_index] = 0.0
        return out.scatter_(-1, x[..., None], torch.where(masked, 0.0, -1.0).double()[..., None])
