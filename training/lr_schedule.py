"""Learning-rate multipliers: linear warm-up, then cosine or linear decay (or none, as in SEDD)."""

from __future__ import annotations

import math
from typing import Literal

Decay = Literal["cosine", "linear", "constant"]


def warmup_decay(step: int, warmup_steps: int, total_steps: int, decay: Decay, min_ratio: float) -> float:
    """The factor multiplying the peak learning rate at optimiser step `step` (0-based).

    Warm-up: (step + 1) / warmup_steps for step < warmup_steps. Then, with progress
    p = (step - warmup_steps) / (total_steps - warmup_steps) clipped to [0, 1]:
    cosine m + (1 - m)(1 + cos(pi p)) / 2, linear m + (1 - m)(1 - p), constant 1; m = min_ratio.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape
