"""any_order_log_likelihood and denoiser_from_score_network. References: enumeration of a small joint law
(the exact conditionals give log p0 for every order), the sum of p^order over all V^L sequences (= 1 for any
denoiser), ctmc.score_to_denoiser, and, for a trained network, the ELBO computed exactly (quadrature over t,
enumeration over x_t) with every one of the L! orders."""

import itertools
import math

import numpy as np
import pytest
import torch
from losses_brute_force import all_sequences, expected_loss, sequence_index, toy_data, true_denoiser

import ctmc
import losses
from models import DiT, RADDDenoiser


class TableDenoiser:
    """x (B, L) in [0, V] -> (B, L, V) rows of a ((V + 1)^L, L, V) table of log-probabilities."""

    def __init__(self, log_table: np.ndarray, vocab_size: int) -> None:
        self.log_table = torch.as_tensor(log_table)
        self.vocab_size = vocab_size
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.log_table[sequence_index(x.numpy(), self.vocab_size + 1)]


def _all_orders(num_sequences: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (sequence index, order) pair: (N L!,) indices and (N L!, L) orders."""
    orders = torch.tensor(list(itertools.permutations(range(length))))
    index = torch.arange(num_sequences).repeat_interleave(len(orders))
    return index, orders.repeat(num_sequences, 1)


@pytest.mark.parametrize(("vocab", "length"), [(3, 3), (2, 4)])
def test_exact_denoiser_gives_log_p0_for_every_order(vocab, length):
    p0 = toy_data(vocab, length, seed=5)
    with np.errstate(divide="ignore"):  # unmasked positions are one-hot: log 0 elsewhere, never read
        denoiser = TableDenoiser(np.log(true_denoiser(p0, vocab, length)), vocab)
    x0s = torch.as_tensor(all_sequences(vocab, length))
    index, orders = _all_orders(len(x0s), length)
    result = losses.any_order_log_likelihood(denoiser, x0s[index], orders)
    assert result.dtype == torch.float64 and denoiser.calls == length
    np.testing.assert_allclose(result.numpy(), np.log(p0)[index.numpy()], rtol=0, atol=1e-10)


def test_any_denoiser_defines_a_normalised_law_for_each_order():
    vocab, length = 3, 3
    logits = np.random.default_rng(0).normal(size=((vocab + 1) ** length, length, vocab))
    log_table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    denoiser = TableDenoiser(log_table, vocab)
    x0s = torch.as_tensor(all_sequences(vocab, length))
    for order in itertools.permutations(range(length)):
        log_p = losses.any_order_log_likelihood(denoiser, x0s, torch.tensor(order).expand(len(x0s), length))
        assert abs(float(log_p.exp().sum()) - 1.0) < 1e-12
    # Different orders give different laws for a denoiser that is not the conditional of one joint law.
    left, right = (
        losses.any_order_log_likelihood(denoiser, x0s, torch.tensor(o).expand(27, 3)) for o in [(0, 1, 2), (2, 1, 0)]
    )
    assert float((left - right).abs().max()) > 1e-3


def test_left_to_right_default_and_steps_per_call():
    torch.manual_seed(0)
    model = RADDDenoiser(6, hidden_size=16, num_layers=1, num_heads=2, max_length=5, tie_weights=True).double()
    x0 = torch.randint(0, 6, (3, 5))
    default = losses.any_order_log_likelihood(model, x0)
    explicit = losses.any_order_log_likelihood(model, x0, torch.arange(5).expand(3, 5))
    stacked = [losses.any_order_log_likelihood(model, x0, steps_per_call=s) for s in (2, 5, 9)]
    for value in [explicit, *stacked]:
        torch.testing.assert_close(value, default, rtol=0, atol=1e-12)


def test_uniform_denoiser_gives_l_log_v():
    model = RADDDenoiser(7, hidden_size=16, num_layers=1, num_heads=2, max_length=4)  # zero head: uniform
    x0 = torch.randint(0, 7, (2, 4))
    order = torch.rand(2, 4).argsort(-1)
    torch.testing.assert_close(
        losses.any_order_log_likelihood(model, x0, order), torch.full((2,), -4 * math.log(7), dtype=torch.float64)
    )


def test_score_network_at_a_fixed_noise_level():
    """The wrapper equals log score_to_denoiser(normalize=True) at masked positions, and the exact score
    network (true denoiser times r(sigma-bar), RADD's factorisation) gives log p0 at every noise level."""
    torch.manual_seed(0)
    network = DiT(5, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, absorbing_parameterization=True).double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randint(0, 5, (3, 6))
    total = 0.05
    denoiser = losses.denoiser_from_score_network(network, total)
    assert denoiser.vocab_size == 4
    sigma = torch.full((3,), total, dtype=torch.float64)
    reference = ctmc.score_to_denoiser(network(x, sigma).exp(), x, sigma, normalize=True).log()
    masked = x == 4
    torch.testing.assert_close(denoiser(x)[masked], reference[masked], rtol=0, atol=1e-12)

    vocab, length = 2, 3
    p0 = toy_data(vocab, length, seed=9)
    log_table = torch.as_tensor(np.log(np.maximum(true_denoiser(p0, vocab, length), 1e-300)))

    def exact_score(x_t, sigma_bar):
        return ctmc.denoiser_to_score(log_table[sequence_index(x_t.numpy(), vocab + 1)], x_t, sigma_bar, log=True)

    exact_score.vocab_size = vocab + 1
    x0s = torch.as_tensor(all_sequences(vocab, length))
    for level in (1e-3, 2.0):
        result = losses.any_order_log_likelihood(losses.denoiser_from_score_network(exact_score, level), x0s)
        np.testing.assert_allclose(result.numpy(), np.log(p0), rtol=0, atol=1e-10)


def test_trained_model_order_average_lies_between_its_elbo_and_the_loss_alone():
    """RADD (Ou et al. 2024): E_order[-log p^order(x0)] is the lambda-DCE integral over lambda in (0, 1]; the loss
    stops at lambda_1 = 1 - eps, so E_order log p^order <= -E[loss] for every x0. The part left out,
    lambda in (1 - eps, 1], is about eps sum_i -log p(x0^i | all masked), below the prior term eps L log V once
    the model's unconditional prediction beats the uniform one: averaged over the data the order average then
    lies above the ELBO -(E[loss] + prior KL). Everything exact: all 4! orders, all x_t, quadrature over t.
    The data favour token 0 (its marginal is about 0.9), which the network learns within 150 steps."""
    vocab, length = 2, 4
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear(1e-2))
    loss = losses.LambdaDCE(process)
    x0s = torch.as_tensor(all_sequences(vocab, length))
    p0 = toy_data(vocab, length, seed=3) * 4.0 ** (x0s.numpy() == 0).sum(1)
    p0 /= p0.sum()
    torch.manual_seed(0)
    model = RADDDenoiser(vocab, hidden_size=32, num_layers=1, num_heads=2, max_length=length)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        x0 = x0s[torch.multinomial(torch.as_tensor(p0), 64, replacement=True, generator=generator)]
        t = loss.sample_time(64, generator=generator)
        x_t = process.sample(x0, t[:, None], generator=generator)
        optimiser.zero_grad()
        loss(model(x_t), x0, x_t, t).mean().backward()
        optimiser.step()
    model = model.double().eval()
    with torch.no_grad():
        table = model(torch.as_tensor(all_sequences(vocab + 1, length)))
        mean_loss = expected_loss(
            loss, process, lambda x_t, t: table[sequence_index(x_t.numpy(), vocab + 1)], vocab, length
        )
        elbo = -(mean_loss + losses.PriorKL(process)(x0s).numpy())
        index, orders = _all_orders(len(x0s), length)
        order_mean = losses.any_order_log_likelihood(model, x0s[index], orders).view(len(x0s), -1).mean(-1).numpy()
    assert np.all(order_mean <= -mean_loss + 1e-9)
    assert p0 @ order_mean >= p0 @ elbo + 1e-3  # measured margin: 0.015 nats
    entropy = -p0 @ np.log(p0)
    assert -p0 @ order_mean < entropy + 0.1, "the network should have learnt p0 (cross-entropy near H(p0))"


def test_errors():
    model = RADDDenoiser(4, hidden_size=16, num_layers=1, num_heads=2, max_length=3)
    x0 = torch.tensor([[0, 1, 2]])
    with pytest.raises(
        ValueError, match=r"order must hold a permutation of 0 .. 2 in every row, but row 0 is \[0, 0, 2\]"
    ):
        losses.any_order_log_likelihood(model, x0, torch.tensor([[0, 0, 2]]))
    with pytest.raises(ValueError, match="order must have the shape of x0"):
        losses.any_order_log_likelihood(model, x0, torch.tensor([[0, 1, 2], [2, 1, 0]]))
    with pytest.raises(ValueError, match=r"x0 holds clean token ids .* outside \[0, 4\)"):
        losses.any_order_log_likelihood(model, torch.tensor([[0, 4, 1]]))
    with pytest.raises(ValueError, match="pass vocab_size=V"):
        losses.any_order_log_likelihood(lambda x: model(x), x0)
    with pytest.raises(ValueError, match=r"denoiser must return \(B, L, V\) = \(1, 3, 4\)"):
        losses.any_order_log_likelihood(lambda x: model(x)[..., :3], x0, vocab_size=4)
    with pytest.raises(ValueError, match=r"apply torch.log_softmax"):
        losses.any_order_log_likelihood(lambda x: torch.ones(*x.shape, 4), x0, vocab_size=4)
