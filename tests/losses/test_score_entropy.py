"""ScoreEntropy against the direct formula with scipy's expm, its zero and minimiser, and its gradient."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from losses_brute_force import all_sequences, denoising_score_entropy, exact_scores, sequence_transition, toy_data

import ctmc
import losses

CHAINS = {
    "absorbing": lambda v: ctmc.Absorbing(v),
    "uniform": lambda v: ctmc.Uniform(v + 1),
    "dense": lambda v: ctmc.Dense(ctmc.BirthDeath(v + 1, 0.7).matrix()),
}


def _setup(kind, vocab, seed, batch=3, length=4):
    process = ctmc.ForwardProcess(CHAINS[kind](vocab), ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    g = torch.Generator().manual_seed(seed)
    clean = loss.num_clean_states
    x0 = torch.randint(0, clean, (batch, length), generator=g)
    t = torch.rand(batch, dtype=torch.float64, generator=g) * 0.98 + 0.01
    x_t = process.sample(x0, t[:, None], generator=g)
    return process, loss, x0, x_t, t, g


@pytest.mark.parametrize("kind", sorted(CHAINS))
@given(vocab=st.integers(2, 5), seed=st.integers(0, 10_000))
def test_matches_direct_formula_and_is_nonnegative(kind, vocab, seed):
    # Reference: the textbook sum with r from scipy.linalg.expm (losses_brute_force), float64, rtol 1e-9.
    process, loss, x0, x_t, t, g = _setup(kind, vocab, seed)
    output = torch.randn(*x0.shape, process.num_states, dtype=torch.float64, generator=g)
    value = loss(output, x0, x_t, t)
    matrix = process.rate_matrix.matrix().numpy()
    expected = denoising_score_entropy(
        matrix, process.total(t).numpy(), process.sigma(t).numpy(), output.numpy(), x0.numpy(), x_t.numpy()
    )
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-9, atol=1e-12)
    assert bool((value >= 0).all())


@pytest.mark.parametrize("kind", sorted(CHAINS))
@given(vocab=st.integers(2, 5), seed=st.integers(0, 10_000), scale=st.floats(0.05, 2.0))
def test_zero_at_true_ratio_and_positive_when_perturbed(kind, vocab, seed, scale):
    # Reference: r_y = P[x0, y] / P[x0, x_t] from the dense transition (ctmc's dense P via scipy-checked expm).
    process, loss, x0, x_t, t, g = _setup(kind, vocab, seed)
    P = torch.linalg.matrix_exp(process.total(t)[:, None, None] * process.rate_matrix.matrix())
    rows = P[torch.arange(len(t))[:, None], x0]  # (B, L, n)
    ratio = rows / rows.gather(-1, x_t[..., None])
    exact = torch.log(ratio)  # -inf where the ratio is 0 (absorbing)
    assert torch.allclose(loss(exact, x0, x_t, t), torch.zeros(len(t), dtype=torch.float64), atol=1e-9)
    noise = scale * torch.randn(exact.shape, dtype=torch.float64, generator=g)
    perturbed = torch.where(torch.isfinite(exact), exact + noise, noise)
    weight = process.rate_matrix.incoming_rates(x_t).scatter(-1, x_t[..., None], 0.0)
    affected = (weight > 0).any(-1).any(-1)  # sequences with at least one contributing position
    assert bool((loss(perturbed, x0, x_t, t)[affected] > 0).all())


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_expected_loss_is_score_entropy_plus_constant_and_minimised_at_exact_score(kind):
    # Reference: enumeration of all clean x0 (vocab 2, length 3) and noisy x_t; exact marginal concrete scores.
    vocab, length, time = 2, 3, 0.37
    process = ctmc.ForwardProcess(CHAINS[kind](vocab), ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    n, clean = process.num_states, loss.num_clean_states
    p0 = toy_data(clean, length, seed=3)
    total = float(process.total(torch.tensor(time, dtype=torch.float64)))
    matrix = process.rate_matrix.matrix().numpy()
    joint = p0[:, None] * sequence_transition(matrix, total, length, clean)  # (N0, N)
    p_t = joint.sum(0)
    exact = np.log(exact_scores(p_t, n, length))
    x0s, xs = all_sequences(clean, length), all_sequences(n, length)
    pairs = np.argwhere(joint > 0)
    x0 = torch.as_tensor(x0s[pairs[:, 0]])
    x_t = torch.as_tensor(xs[pairs[:, 1]])
    weights = torch.as_tensor(joint[pairs[:, 0], pairs[:, 1]])
    times = torch.full((len(pairs),), time, dtype=torch.float64)

    def expected(table):
        return (weights * loss(table[pairs[:, 1]], x0, x_t, times)).sum()

    def score_entropy(table):  # implicit score entropy: E_{x ~ p_t} sum w (s - s_hat log s + K(s_hat))
        s, s_hat = table.exp(), torch.as_tensor(exact).exp()
        w = process.sigma(torch.tensor(time, dtype=torch.float64)) * process.rate_matrix.incoming_rates(
            torch.as_tensor(xs)
        ).scatter(-1, torch.as_tensor(xs)[..., None], 0.0)
        terms = w * (s - s_hat * table + s_hat * (s_hat.log() - 1))
        return (torch.as_tensor(p_t)[:, None, None] * terms).sum()

    table = torch.tensor(exact, requires_grad=True)
    value = expected(table)
    (grad,) = torch.autograd.grad(value, table)
    assert grad.abs().max().item() < 1e-10  # the exact score is a stationary point
    g = torch.Generator().manual_seed(0)
    gaps = []
    for _ in range(2):
        other = torch.as_tensor(exact) + 0.5 * torch.randn(exact.shape, dtype=torch.float64, generator=g)
        assert expected(other).item() > value.item()
        gaps.append(expected(other).item() - score_entropy(other).item())
    assert score_entropy(torch.as_tensor(exact)).item() == pytest.approx(0.0, abs=1e-12)
    assert gaps[0] == pytest.approx(gaps[1], rel=1e-10)
    assert gaps[0] == pytest.approx(value.item(), rel=1e-10)  # the constant is E[DSE] at the exact score
