"""PriorKL and forward_prior: the t = 1 prior term of the ELBO. References: closed forms derived in the module
docstring (eps log V for the absorbing chain, the uniform chain's a log(na) + (n - 1) b log(nb)), scipy's expm
with numpy for a dense chain, and enumeration of an enumerable chain for the honest bound: with the exact model,
E[loss] = H(p0) - I(X0; X1) < H(p0), while E[loss] + prior KL bounds the NLL of the model started from the
data-independent prior, within the prior term."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from losses_brute_force import (
    all_sequences,
    expected_loss,
    kl_rows,
    noisy_exact_scores,
    radd_reverse_marginal,
    score_reverse_marginal,
    sequence_index,
    sequence_transition,
    toy_data,
    true_denoiser,
)
from scipy.linalg import expm

import ctmc
import losses


@given(st.integers(1, 60_000), st.floats(1e-6, 0.5))
def test_absorbing_loglinear_prior_is_eps_log_v_per_token(vocab, eps):
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear(eps))
    x0 = torch.randint(0, vocab, (2, 5), generator=torch.Generator().manual_seed(0))
    per_sequence = losses.PriorKL(process)(x0)
    np.testing.assert_allclose(per_sequence.numpy(), 5 * eps * math.log(vocab), rtol=1e-9, atol=1e-300)


def test_absorbing_geometric_and_the_prior_vector():
    process = ctmc.ForwardProcess(ctmc.Absorbing(4), ctmc.Geometric(1e-3, 3.0))
    keep = math.exp(-(3.0 - 1e-3))  # e^{-sigma-bar(1)}
    prior = losses.forward_prior(process)
    np.testing.assert_allclose(prior.numpy(), [keep / 4] * 4 + [1 - keep], rtol=1e-12)
    per_token = losses.PriorKL(process).per_token(torch.arange(4)).numpy()
    np.testing.assert_allclose(per_token, keep * math.log(4), rtol=1e-9)


def test_uniform_chain_closed_form():
    n, eps = 7, 1e-2
    process = ctmc.ForwardProcess(ctmc.Uniform(n), ctmc.LogLinear(eps))
    a, b = eps + (1 - eps) / n, (1 - eps) / n  # e^{-sigma-bar(1)} = eps
    expected = a * math.log(n * a) + (n - 1) * b * math.log(n * b)
    np.testing.assert_allclose(losses.forward_prior(process).numpy(), np.full(n, 1 / n), rtol=1e-12)
    np.testing.assert_allclose(losses.PriorKL(process).per_token(torch.arange(n)).numpy(), expected, rtol=1e-9)


def test_dense_chain_and_a_custom_prior_against_scipy():
    rates = np.random.default_rng(0).uniform(0.1, 1.0, size=(4, 4))
    np.fill_diagonal(rates, 0.0)
    np.fill_diagonal(rates, -rates.sum(1))
    process = ctmc.ForwardProcess(ctmc.Dense(torch.as_tensor(rates)), ctmc.LogLinear(0.2))
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    rows = expm(-math.log(0.2) * rates)  # sigma-bar(1) = -log(eps)
    term = losses.PriorKL(process, torch.as_tensor(prior))
    x0 = torch.tensor([[0, 3, 3, 1], [2, 2, 0, 1]])
    np.testing.assert_allclose(term(x0).numpy(), kl_rows(rows, prior)[x0.numpy()].sum(1), rtol=1e-10)
    assert term(x0).dtype == torch.float64


def test_all_mask_prior_is_infinite_and_inputs_are_checked():
    process = ctmc.ForwardProcess(ctmc.Absorbing(3), ctmc.LogLinear(1e-3))
    all_mask = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    assert math.isinf(float(losses.PriorKL(process, all_mask)(torch.tensor([[0, 1]]))[0]))
    with pytest.raises(ValueError, match=r"x0 holds clean token ids .* outside \[0, 3\)"):
        losses.PriorKL(process)(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="prior must be non-negative and sum to 1"):
        losses.PriorKL(process, torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"prior must be a floating tensor of shape \(n,\) = \(4,\)"):
        losses.PriorKL(process, torch.ones(3, dtype=torch.float64) / 3)


def _honest_bound_check(mean_loss, prior_term, p_model, p0, mutual_information):
    """The assertions shared by every chain, per clean sequence x0 (arrays over all clean sequences)."""
    entropy = -p0 @ np.log(p0)
    nll = -np.log(p_model)
    # The loss alone: H(p0) - I(X0; X1), below the entropy, so below the NLL of any model.
    np.testing.assert_allclose(p0 @ mean_loss, entropy - mutual_information, rtol=0, atol=1e-7)
    assert p0 @ mean_loss < entropy - 1e-4
    # I(X0; X1) = min over priors pi of E KL(p_{1|0} || pi), so no prior term can be smaller.
    assert mutual_information <= p0 @ prior_term
    # With the prior term: an upper bound on the NLL of the model a sampler runs, per x0, within that term.
    bound = mean_loss + prior_term
    assert np.all(bound >= nll - 1e-7)
    assert 0.0 <= p0 @ (bound - nll) <= p0 @ prior_term
    assert p0 @ bound >= entropy


@pytest.mark.parametrize("loss_class", [losses.ScoreEntropy, losses.LambdaDCE])
def test_honest_bound_absorbing(loss_class):
    vocab, length, eps = 2, 3, 1e-3
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear(eps))
    n = vocab + 1
    p0 = toy_data(vocab, length, seed=7)
    table = true_denoiser(p0, vocab, length)
    with np.errstate(divide="ignore"):
        log_table = torch.as_tensor(np.log(table))

    def output_at(x_t, t):
        log_probs = log_table[sequence_index(x_t.numpy(), n)]
        if loss_class is losses.LambdaDCE:
            return log_probs
        return ctmc.denoiser_to_score(log_probs, x_t, process.total(t), log=True)

    mean_loss = expected_loss(loss_class(process), process, output_at, vocab, length)
    x0s = torch.as_tensor(all_sequences(vocab, length))
    prior_term = losses.PriorKL(process)(x0s).numpy()
    np.testing.assert_allclose(prior_term, length * eps * math.log(vocab), rtol=1e-9)
    q1 = sequence_transition(process.rate_matrix.matrix().numpy(), -math.log(eps), length, vocab)
    prior = losses.forward_prior(process).numpy()
    prior_sequences = np.prod(prior[all_sequences(n, length)], axis=1)
    p_model = radd_reverse_marginal(table, vocab, length, prior_sequences)
    mutual_information = p0 @ kl_rows(q1, p0 @ q1)
    _honest_bound_check(mean_loss, prior_term, p_model, p0, mutual_information)


def test_honest_bound_uniform():
    states, length = 3, 2
    process = ctmc.ForwardProcess(ctmc.Uniform(states), ctmc.LogLinear(1e-2))
    matrix = process.rate_matrix.matrix().numpy()
    p0 = toy_data(states, length, seed=11)
    top = -math.log(1e-2)

    def output_at(x_t, t):
        scores = noisy_exact_scores(p0, matrix, float(process.total(t[:1])), length, states, 0.0)
        return torch.as_tensor(np.log(scores[sequence_index(x_t.numpy(), states)]))

    mean_loss = expected_loss(losses.ScoreEntropy(process), process, output_at, states, length)
    prior_term = losses.PriorKL(process)(torch.as_tensor(all_sequences(states, length))).numpy()
    prior_sequences = np.full(states**length, 1.0 / states**length)  # forward_prior is uniform here
    p_model = score_reverse_marginal(
        lambda total: noisy_exact_scores(p0, matrix, total, length, states, 0.0), matrix, top, length, prior_sequences
    )
    q1 = sequence_transition(matrix, top, length, states)
    _honest_bound_check(mean_loss, prior_term, p_model, p0, p0 @ kl_rows(q1, p0 @ q1))


@pytest.mark.parametrize("rate_matrix", [ctmc.Absorbing(6), ctmc.Uniform(6)])
def test_symmetric_shortcut_equals_the_row_by_row_computation(rate_matrix):
    """With the default prior one row fills the table; an explicit copy of that prior takes the general path."""
    process = ctmc.ForwardProcess(rate_matrix, ctmc.Geometric(1e-2, 2.0))
    tokens = torch.arange(6)
    shortcut = losses.PriorKL(process).per_token(tokens)
    general = losses.PriorKL(process, losses.forward_prior(process)).per_token(tokens)
    rows = expm(float(process.total(torch.tensor(1.0, dtype=torch.float64))) * rate_matrix.matrix().numpy())[:6]
    np.testing.assert_allclose(general.numpy(), kl_rows(rows, losses.forward_prior(process).numpy()), rtol=1e-10)
    np.testing.assert_allclose(shortcut.numpy(), general.numpy(), rtol=1e-12)
