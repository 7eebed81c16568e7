"""Reproducible noise: every random draw of training and evaluation comes from a generator whose seed is a
function of named integers, so that a run resumed from a checkpoint, or split across devices, draws the
same noise as one uninterrupted process.

Seeds are mixed with numpy's `SeedSequence` (a hash designed for this), never by adding integers.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import Tensor


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every integer in `parts` (each >= 0)."""
    state = np.random.SeedSequence([int(part) for part in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def seeded_generator(device: torch.device | str, *parts: int) -> torch.Generator:
    """A torch.Generator on `device` seeded with mixed_seed(*parts)."""
    return torch.Generator(device=device).manual_seed(mixed_seed(*parts))


def content_seeds(tokens: Tensor) -> list[int]:
    """One integer per row of tokens (B, L): a 63-bit BLAKE2b hash of the row's token ids.

    Seeding a row's noise by its content makes evaluation independent of how rows are batched or split
    across devices.
    """
    rows = tokens.detach().to("cpu", torch.int64).numpy()
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 1 for row in rows]
