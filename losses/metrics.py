"""Evaluation units: nats per sequence -> bits per token and a perplexity upper bound.

A loss whose expectation is a negative ELBO in nats upper-bounds -log p(x0) (in nats). Divided by the
number of tokens it bounds the per-token negative log-likelihood; bits are nats / ln 2, and the perplexity
bound is exp(nats per token) (not 2^bits of anything else).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _per_token(nats: Tensor | float, num_tokens: Tensor | int) -> Tensor:
    nats = torch.as_tensor(nats, dtype=torch.float64) if not isinstance(nats, Tensor) else nats
    if not nats.is_floating_point():
        raise TypeError(f"nats must be a floating tensor (a loss in nats), got {nats.dtype}")
    count = torch.as_tensor(num_tokens, device=nats.device)
    if count.is_floating_point() and not bool((count == count.round()).all()):
        raise ValueError("num_tokens must count tokens (whole numbers)")
    if bool((count <= 0).any()):
        raise ValueError(f"num_tokens must be > 0, got {count.min().item()}")
    return nats / count.to(nats.dtype)


def bits_per_token(nats: Tensor | float, num_tokens: Tensor | int) -> Tensor:
    """bits/token = nats / (num_tokens ln 2), e.g. nats = summed loss over sequences, num_tokens = their tokens.

    nats: (...) float (any shape, e.g. (B,) per-sequence NELBOs); num_tokens: int or tensor broadcastable to it.
    """
    return _per_token(nats, num_tokens) / math.log(2.0)


def perplexity_bound(nats: Tensor | float, num_tokens: Tensor | int) -> Tensor:
    """Perplexity upper bound exp(nats / num_tokens) from a negative ELBO in nats (natural log)."""
    return torch.exp(_per_token(nats, num_tokens))
