"""Networks asked for a subset of positions (`where`): the packed rows against the full output, in float64.

References: the full (B, L, S) output indexed by the (B, L) bool (values and parameter gradients), and the
network's formula written out with the trunk's modules on 3-D tensors and an out-of-place shift and scatter
(the implementation before the rows view).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import models
from ctmc.noise_ratio import log_expm1

VOCAB = 11


def _dit(absorbing: bool, tie_weights: bool = False) -> models.DiT:
    torch.manual_seed(0)
    network = models.DiT(VOCAB + 1, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=8,
                         absorbing_parameterization=absorbing, tie_weights=tie_weights).double()
    with torch.no_grad():  # leave the zero initialisation, so that the head and adaLN act on the output
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return network


def _radd() -> models.RADDDenoiser:
    torch.manual_seed(0)
    network = models.RADDDenoiser(VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_length=8).double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return network


NETWORKS = {
    "dit": lambda: _dit(False),
    "dit_absorbing": lambda: _dit(True),
    "dit_tied": lambda: _dit(True, tie_weights=True),
    "radd": _radd,
}


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB + 1, (4, 8), generator=g)
    x[0] = VOCAB  # fully masked
    x[1] = torch.randint(0, VOCAB, (8,), generator=g)  # no mask
    sigma = torch.rand(4, dtype=torch.float64, generator=g) + 0.1
    where = torch.rand(4, 8, generator=g) < 0.5
    where[0], where[1] = True, False  # a row asked in full and a row asked for nothing
    return x, sigma, where, g


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_packed_rows_equal_the_full_output_and_its_gradients(name):
    network = NETWORKS[name]()
    x, sigma, where, g = _inputs()
    full = network(x, sigma)
    packed = network(x, sigma, where=where)
    assert packed.shape == (int(where.sum()), full.shape[-1])
    torch.testing.assert_close(packed, full[where], rtol=1e-12, atol=1e-12)
    probe = torch.randn(packed.shape, dtype=torch.float64, generator=g)
    grads_full = torch.autograd.grad((full[where] * probe).sum(), list(network.parameters()), allow_unused=True)
    grads_packed = torch.autograd.grad((packed * probe).sum(), list(network.parameters()), allow_unused=True)
    for a, b in zip(grads_full, grads_packed, strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert network(x, sigma, where=torch.zeros_like(where)).shape == (0, full.shape[-1])


@pytest.mark.parametrize("absorbing", [False, True])
def test_dit_output_matches_the_formula_on_three_dimensional_tensors(absorbing):
    network = _dit(absorbing)
    x, sigma, _, _ = _inputs(2)
    trunk = network.trunk
    cond = network.noise_embedding(sigma)
    h = trunk.final_norm.norm(trunk.hidden_states(x, cond))
    shift, scale = trunk.final_norm.modulation(cond)[:, None, :].chunk(2, dim=-1)
    logits = F.linear(h * (1 + scale) + shift, trunk.output_weight, trunk.output_bias)
    if absorbing:
        logits = logits - (log_expm1(sigma) + math.log(VOCAB))[:, None, None]
    expected = logits.scatter(-1, x[..., None], 0.0)
    torch.testing.assert_close(network(x, sigma), expected, rtol=1e-12, atol=1e-12)


def test_bad_where_is_refused_on_one_line():
    network, radd = _dit(True), _radd()
    x, sigma, where, _ = _inputs()
    for call in (lambda w: network(x, sigma, where=w), lambda w: radd(x, where=w)):
        with pytest.raises(TypeError, match=r"where must be None or a \(B, L\) bool tensor"):
            call(where.long())
        with pytest.raises(ValueError, match=r"where must have the shape of x, \(4, 8\), got \(4, 7\)"):
            call(where[:, :7])
