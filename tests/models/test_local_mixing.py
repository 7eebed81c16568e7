"""models.local_mixing.LocalMixing against an explicit sum, and the causality it keeps in the trunk."""

import pytest
import torch

import models
from models.local_mixing import LocalMixing


def explicit_mixing(h: torch.Tensor, weight: torch.Tensor, offset: int) -> torch.Tensor:
    """h_l + sum_j w_j * h_{l + j - offset} with zeros outside [0, L), by loops. weight: (H, k)."""
    out = h.clone()
    length = h.shape[1]
    for position in range(length):
        for j in range(weight.shape[1]):
            source = position + j - offset
            if 0 <= source < length:
                out[:, position] += weight[:, j] * h[:, source]
    return out


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_local_mixing_equals_the_explicit_sum(kernel_size: int, causal: bool) -> None:
    torch.manual_seed(kernel_size)
    layer = LocalMixing(6, kernel_size, causal).double()
    h = torch.randn(2, 7, 6, dtype=torch.float64)
    offset = kernel_size - 1 if causal else (kernel_size - 1) // 2
    expected = explicit_mixing(h, layer.conv.weight[:, 0, :], offset)
    torch.testing.assert_close(layer(h), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_local_mixing_rejects_a_bad_kernel_size(bad: object) -> None:
    with pytest.raises(ValueError, match="kernel size"):
        LocalMixing(4, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local_mixing"):
        models.RADDDenoiser(10, 16, 1, 2, 8, local_mixing=-1 if bad == 0 else bad)  # type: ignore[arg-type]


def test_the_causal_trunk_stays_causal_and_the_denoiser_sees_both_sides() -> None:
    torch.manual_seed(0)
    ar = models.ARTransformer(20, 16, 2, 2, 16, local_mixing=3).double()
    radd = models.RADDDenoiser(20, 16, 2, 2, 16, local_mixing=3).double()
    for network in (ar, radd):  # nonzero heads, so that the outputs depend on the trunk
        torch.nn.init.normal_(network.trunk.output_weight)
    x = torch.randint(0, 20, (3, 10))
    changed = x.clone()
    changed[:, 6] = (x[:, 6] + 1) % 20
    ar_before, ar_after = ar(x), ar(changed)
    # AR output l reads x[:, :l]: positions 0..6 cannot see x[:, 6], positions 7.. must.
    torch.testing.assert_close(ar_before[:, :7], ar_after[:, :7], rtol=0, atol=0)
    assert (ar_before[:, 7:] - ar_after[:, 7:]).abs().amax() > 1e-6
    radd_before, radd_after = radd(x), radd(changed)
    assert (radd_before[:, 5] - radd_after[:, 5]).abs().amax() > 1e-6  # the left neighbour sees it


def test_local_mixing_adds_k_h_parameters_for_the_embeddings_and_per_block() -> None:
    plain = models.DiT(30, 16, 3, 2, 8, 16)
    mixed = models.DiT(30, 16, 3, 2, 8, 16, local_mixing=5)
    assert mixed.num_parameters - plain.num_parameters == (3 + 1) * 5 * 16
    assert len(plain.trunk.mixing) == 0


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("segment", [1, 3, 4, 7, 9])
def test_segmented_mixing_is_the_explicit_sum_within_each_run(kernel_size: int, causal: bool, segment: int) -> None:
    """segment = s: the explicit sum applied to each run [j s, (j + 1) s) on its own (the last one shorter)."""
    torch.manual_seed(segment)
    layer = LocalMixing(5, kernel_size, causal).double()
    h = torch.randn(2, 7, 5, dtype=torch.float64)
    offset = kernel_size - 1 if causal else (kernel_size - 1) // 2
    weight = layer.conv.weight[:, 0, :]
    expected = torch.cat(
        [explicit_mixing(h[:, start : start + segment], weight, offset) for start in range(0, 7, segment)], dim=1
    )
    torch.testing.assert_close(layer(h, segment), expected, rtol=1e-12, atol=1e-12)
