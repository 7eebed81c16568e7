"""How a destination token is chosen once a position jumps: exact float64 draws, temperature, top-k, top-p, argmax.

Given the (unnormalised) destination weights w_y of a jumping position (for the absorbing chain these are the
denoiser's probabilities p(x_0^i = y | x_t), up to a constant), the token is drawn from

    q_y proportional to (w_y)^{1 / temperature}, restricted to the top_k largest and to the smallest set of
    largest entries whose mass reaches top_p (nucleus), or y = argmax w (greedy decoding).

Every draw goes through `ctmc.sample_categorical` (inverse CDF in float64): float32 uniforms have a granularity
of 2^-24, which caps float32 Gumbel noise near 16.6 and makes categories more than ~e^-19 times less likely
than the leader unreachable (Zheng et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import ctmc


@dataclass(frozen=True)
class Decoding:
    """Settings of the destination draw; the defaults sample the model's distribution exactly."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r}; use greedy=True for argmax")
        if self.top_k is not None and not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise ValueError(f"top_k must be None or an int >= 1, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be None or a number in (0, 1], got {self.top_p!r}")

    @property
    def is_exact(self) -> bool:
        """Whether draws follow the weights unchanged (no temperature, truncation or argmax)."""
        return self.temperature == 1.0 and self.top_k is None and self.top_p is None and not self.greedy

    def transform(self, weights: Tensor) -> Tensor:
        """Apply temperature, top-k and top-p to (k, m) non-negative weights; returns (k, m) float64 weights."""
        w = weights.to(torch.float64)
        if self.temperature != 1.0:
            # w^{1/T} computed relative to the row maximum so that a low temperature does not underflow.
            peak = w.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
            w = (w / peak) ** (1.0 / self.temperature)
        if self.top_k is not None and self.top_k < w.shape[-1]:
            kth = w.topk(self.top_k, dim=-1).values[..., -1:]
            w = torch.where(w >= kth, w, 0.0)
        if self.top_p is not None and self.top_p < 1.0:
            sorted_w, order = w.sort(-1, descending=True)
            before = sorted_w.cumsum(-1) - sorted_w  # mass strictly before each entry in sorted order
            keep_sorted = before < self.top_p * w.sum(-1, keepdim=True)
            keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
            w = torch.where(keep, w, 0.0)
        return w

    def draw(self, weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One index per row of (k, m) non-negative weights with positive row sums. Returns (k,) long."""
        if weights.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=weights.device)
        if self.greedy:
            return weights.argmax(-1)
        return ctmc.sample_categorical(self.transform(weights), generator)
