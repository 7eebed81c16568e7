"""Rotary position embedding (RoPE, Su et al. 2021), in the half-split layout used by GPT-NeoX and SEDD.

A head vector x of even size D is split into halves (x1, x2); pair i = (x1[i], x2[i]) is rotated by the
angle p * theta_i, where p is the position and theta_i = base^(-2i/D):

    rope(x, p) = x * cos(p theta) + rotate_half(x) * sin(p theta),   rotate_half(x1, x2) = (-x2, x1).

Because rotations compose, <rope(q, m), rope(k, n)> = <q, R((n - m) theta) k>: attention scores depend on
the positions only through their difference n - m.
"""

from typing import NamedTuple

import torch
from torch import Tensor

ROTARY_BASE = 10_000.0


class Rotation(NamedTuple):
    """Per-position rotation tables. cos, sin: (L, D), each half of the last axis repeating the other."""

    cos: Tensor
    sin: Tensor


def rotary_rotation(positions: Tensor, head_dim: int, base: float = ROTARY_BASE) -> Rotation:
    """Tables cos(p theta_i), sin(p theta_i) with theta_i = base^(-2i/D), i in [0, D/2).

    positions: (L,) integer or floating (float64 positions give float64 tables; anything else float32).
    head_dim: D, even. Returns a Rotation with cos, sin of shape (L, D).
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even number, got {head_dim}")
    dtype = torch.float64 if positions.dtype == torch.float64 else torch.float32
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=dtype) / head_dim
    inverse_frequencies = base**-exponents  # (D/2,)
    angles = positions.to(dtype)[:, None] * inverse_frequencies[None, :]  # (L, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, D)
    return Rotation(cos=angles.cos(), sin=angles.sin())


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) on the last axis. x: (..., D) with D even."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: Tensor, rotation: Rotation) -> Tensor:
    """rope(x, p) = x * cos(p theta) + rotate_half(x) * sin(p theta), in at least float32.

    x: (..., L, D); rotation: tables of shape (L, D). Returns (..., L, D) in x's dtype.
    """
    compute_dtype = torch.promote_types(x.dtype, rotation.cos.dtype)
    x_wide = x.to(compute_dtype)
    rotated = x_wide * rotation.cos + rotate_half(x_wide) * rotation.sin
    return rotated.to(x.dtype)
