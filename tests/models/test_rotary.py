"""RoPE: compared against an explicit per-pair 2x2 rotation, and the relative-position identity
<rope(q, m + s), rope(k, n + s)> = <rope(q, m), rope(k, n)> (Su et al. 2021, eq. 16)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.rotary import ROTARY_BASE, apply_rotary, rotary_rotation


def _rotated_scores(query: torch.Tensor, key: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(L, L) matrix of <rope(query_i, p_i), rope(key_j, p_j)>. query, key: (L, D) float64."""
    rotation = rotary_rotation(positions, query.shape[-1])
    return apply_rotary(query, rotation) @ apply_rotary(key, rotation).T


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    head_dim=st.sampled_from([2, 4, 8, 32]),
    shift=st.integers(-500, 500),
)
def test_scores_depend_only_on_position_differences(seed: int, head_dim: int, shift: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    length = 6
    query = torch.randn(length, head_dim, generator=generator, dtype=torch.float64)
    key = torch.randn(length, head_dim, generator=generator, dtype=torch.float64)
    positions = torch.randint(0, 1000, (length,), generator=generator).double()
    reference = _rotated_scores(query, key, positions)
    shifted = _rotated_scores(query, key, positions + shift)
    torch.testing.assert_close(shifted, reference, rtol=0, atol=1e-9)


def test_scores_do_depend_on_positions() -> None:
    """The identity above is not vacuous: moving one token (not all) changes its scores."""
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    key = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    positions = torch.arange(4, dtype=torch.float64)
    moved = positions.clone()
    moved[0] = 9.0
    assert not torch.allclose(_rotated_scores(query, key, positions), _rotated_scores(query, key, moved))


def test_matches_explicit_pair_rotation() -> None:
    """Reference: pair (x[i], x[i + D/2]) rotated by angle p * base^(-2i/D), written out with math.cos/sin."""
    head_dim, length = 8, 5
    x = torch.randn(length, head_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = apply_rotary(x, rotary_rotation(torch.arange(length, dtype=torch.float64), head_dim))
    half = head_dim // 2
    for position in range(length):
        for i in range(half):
            angle = position * ROTARY_BASE ** (-2 * i / head_dim)
            first, second = x[position, i].item(), x[position, i + half].item()
            expected_first = first * math.cos(angle) - second * math.sin(angle)
            expected_second = first * math.sin(angle) + second * math.cos(angle)
            assert out[position, i].item() == pytest.approx(expected_first, abs=1e-12)
            assert out[position, i + half].item() == pytest.approx(expected_second, abs=1e-12)


def test_is_an_isometry_and_identity_at_position_zero() -> None:
    x = torch.randn(2, 3, 7, 16, dtype=torch.float64)
    rotation = rotary_rotation(torch.arange(7), 16)
    torch.testing.assert_close(apply_rotary(x, rotation).norm(dim=-1), x.norm(dim=-1), rtol=1e-6, atol=0)
    torch.testing.assert_close(apply_rotary(x, rotation)[..., 0, :], x[..., 0, :], rtol=1e-6, atol=1e-7)


def test_keeps_low_precision_dtype() -> None:
    x = torch.randn(3, 8).to(torch.bfloat16)
    assert apply_rotary(x, rotary_rotation(torch.arange(3), 8)).dtype == torch.bfloat16


@pytest.mark.parametrize("head_dim", [0, 3, -2])
def test_rejects_odd_or_nonpositive_head_dim(head_dim: int) -> None:
    with pytest.raises(ValueError, match="head_dim"):
        rotary_rotation(torch.arange(4), head_dim)
