"""Reverse-time rates from a concrete score (Lou et al. 2024; Lemma A of Shi et al. 2024).

In the row convention, the time reversal of a chain with rates Q_t jumps from x to y != x at rate

    R_t(x -> y) = Q_t(y, x) p_t(y) / p_t(x) = sigma(t) Q[y, x] s(x)_y,

where s(x)_y = p_t(y) / p_t(x) is the concrete score. For a sequence, y differs from x in one position i and
Q is applied per token, so the same formula holds per position with s[b, i, y].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.checks import as_time, broadcast_time, check_states
from ctmc.rate_matrix import RateMatrix


def reverse_rates(rate_matrix: RateMatrix, x: Tensor, score: Tensor, sigma: Tensor | float = 1.0) -> Tensor:
    """R(x -> y) = sigma Q[y, x] score[..., y] for y != x, and R(x -> x) = -sum_{y != x} R(x -> y).

    x: (...) long in [0, n); score: x.shape + (n,) non-negative (its entry at y = x is ignored);
    sigma: the schedule's rate sigma(t), broadcastable to x.shape. Returns x.shape + (n,) in score's dtype.
    """
    x = check_states(x, rate_matrix.num_states)
    if not isinstance(score, Tensor) or not score.is_floating_point():
        raise TypeError("score must be a floating tensor of shape x.shape + (n,)")
    if score.shape != (*x.shape, rate_matrix.num_states):
        raise ValueError(
            f"score must have shape {(*x.shape, rate_matrix.num_states)} (x.shape + (num_states,)), "
            f"got {tuple(score.shape)}"
        )
    if not bool(torch.isfinite(score).all()) or bool((score < 0).any()):
        raise ValueError("score must be finite and non-negative (it estimates ratios p_t(y) / p_t(x))")
    rates = rate_matrix.incoming_rates(x).to(score.dtype) * score
    rates.scatter_(-1, x[..., None], 0.0)
    rates.scatter_(-1, x[..., None], -rates.sum(-1, keepdim=True))
    sigma = broadcast_time(x, as_time(sigma, "sigma"), name="sigma")
    return rates * sigma.to(score.dtype)[..., None]
