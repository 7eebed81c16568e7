"""The share of samples a judge assigns to the requested class, with its binomial standard error.

For n samples of which k are classified as the requested class, the share is p = k / n and, treating the n
verdicts as independent Bernoulli draws, its standard error is sqrt(p (1 - p) / n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class ClassShare:
    """share: k / n; standard_error: sqrt(share (1 - share) / n); hits: k; total: n."""

    share: float
    standard_error: float
    hits: int
    total: int


def class_share(predicted: Tensor, label: int) -> ClassShare:
    """The share of `predicted` ((n,) long class ids, n >= 1) equal to `label`, with its binomial standard error."""
    if not isinstance(predicted, Tensor) or predicted.dim() != 1 or predicted.numel() == 0:
        shape = getattr(predicted, "shape", type(predicted).__name__)
        raise ValueError(f"predicted must be a non-empty (n,) tensor of class ids, got {shape}")
    if isinstance(label, bool) or not isinstance(label, int):
        raise ValueError(f"label must be an int class id, got {label!r}")
    hits, total = int((predicted == label).sum()), predicted.numel()
    share = hits / total
    return ClassShare(share, math.sqrt(share * (1.0 - share) / total), hits, total)
