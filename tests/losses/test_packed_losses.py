"""Losses on packed outputs (the network asked only for `loss.output_positions(x_t)`) against the full output.

Reference: the same loss on the full (B, L, S) output of the same float64 network; values and gradients with
respect to the network's parameters must agree to round-off, on random x_t with a row that has no masked
position and a fully masked row.
"""

import pytest
import torch

import ctmc
import losses
import models

VOCAB = 13


def _network(time_independent: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    if time_independent:
        network = models.RADDDenoiser(VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_length=6)
    else:
        network = models.DiT(VOCAB + 1, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=6,
                              absorbing_parameterization=True)
    network = network.double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return network


@pytest.mark.parametrize("name", ["ScoreEntropy", "LambdaDCE", "TDCE", "MDLMNELBO"])
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_and_full_outputs_give_the_same_loss_and_gradients(name, seed):
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    loss = getattr(losses, name)(process)
    network = _network(loss.time_independent)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, VOCAB, (5, 6), generator=g)
    t = loss.sample_time(5, generator=g).double()
    x_t = process.sample(x0, t[:, None], generator=g)
    x_t[0], x_t[1] = x0[0], VOCAB  # no masked position; every position masked
    where = loss.output_positions(x_t)
    assert torch.equal(where, x_t == VOCAB)
    sigma = process.total(t)
    full = loss(network(x_t, sigma), x0, x_t, t)
    packed = loss(network(x_t, sigma, where=where), x0, x_t, t)
    assert full.shape == packed.shape == (5,) and full[0] == 0 and packed[0] == 0
    torch.testing.assert_close(packed, full, rtol=1e-12, atol=1e-12)
    parameters = [p for p in network.parameters()]
    probe = torch.rand(5, dtype=torch.float64, generator=g)  # a different weight per sequence
    grads_full = torch.autograd.grad((full * probe).sum(), parameters, allow_unused=True)
    grads_packed = torch.autograd.grad((packed * probe).sum(), parameters, allow_unused=True)
    for a, b in zip(grads_full, grads_packed, strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("chain", "make_loss"),
    [(ctmc.Uniform(VOCAB), losses.ScoreEntropy), (ctmc.Absorbing(VOCAB), losses.D3PMLoss)],
    ids=["uniform_score_entropy", "d3pm_hybrid_term"],
)
def test_losses_that_read_every_position_refuse_packed_outputs(chain, make_loss):
    loss = make_loss(ctmc.ForwardProcess(chain, ctmc.LogLinear()))
    x0 = torch.randint(0, VOCAB, (2, 3))
    assert loss.output_positions(x0) is None
    output = torch.zeros(4, chain.num_states, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"reads every position \(output_positions\(x_t\) is None\)"):
        loss(output, x0, x0, torch.ones(2))


def test_packed_output_with_the_wrong_number_of_rows_is_refused():
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    x0 = torch.zeros(2, 3, dtype=torch.long)
    x_t = x0.clone()
    x_t[0, :2] = VOCAB
    message = r"output must have shape \(N, n\) rows at loss.output_positions\(x_t\) = \(2, 14\)"
    with pytest.raises(ValueError, match=message):
        loss(torch.zeros(3, VOCAB + 1, dtype=torch.float64), x0, x_t, torch.full((2,), 0.5))
