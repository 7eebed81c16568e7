"""The absorbing chain's unmasking ratio in log space.

For the absorbing chain a token survives to total noise sigma-bar with probability e^{-sigma-bar}, so at a
masked position the ratio of forward probabilities is

    r(sigma-bar) = p(x_t = x0 | x0) / p(x_t = M | x0) = e^{-sigma-bar} / (1 - e^{-sigma-bar}) = 1 / expm1(sigma-bar),

which explodes as sigma-bar -> 0 and vanishes as sigma-bar -> inf. Both are handled through
log expm1(s) = s + log(-expm1(-s)), accurate for every s > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_expm1(x: Tensor) -> Tensor:
    """log(e^x - 1) = x + log(1 - e^{-x}) for x > 0, without overflow (large x) or cancellation (small x)."""
    return x + torch.log(-torch.expm1(-x))


def log_mask_ratio(total: Tensor) -> Tensor:
    """log r = log(e^{-sigma-bar} / (1 - e^{-sigma-bar})) = -log expm1(sigma-bar). total: (...) > 0."""
    return -log_expm1(total)
