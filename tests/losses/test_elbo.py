"""The ELBO property: E_t[loss(x0)] + KL(q_1(. | x0) || prior) >= -log p_model(x0), tight at the exact score.

-log p_model(x0) comes from the model's reverse CTMC over all |states|^L sequences, solved from t = 1 with the
prior down to t = 0 (matrix exponential for the time-free RADD generator, an ODE solve for the uniform chain).
The loss's time integral uses scipy's quad_vec over t with x_t enumerated. The prior is the forward marginal
p_1 of the data (absorbing: the all-mask prior has infinite KL while LogLinear keeps a fraction eps unmasked);
for the uniform chain also the uniform prior of SEDD.
"""

import numpy as np
import pytest
import torch
from losses_brute_force import (
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


def test_fast_transition_matches_scipy_expm():
    # Reference: scipy.linalg.expm; the eigendecomposition shortcut is what the integrands use.
    from losses_brute_force import fast_token_transition

    for rate_matrix in (ctmc.Absorbing(3), ctmc.Uniform(4)):
        matrix = rate_matrix.matrix().numpy()
        for total in (1e-6, 0.3, 7.0):
            np.testing.assert_allclose(fast_token_transition(matrix, total), expm(total * matrix), atol=1e-13)


@pytest.mark.parametrize("exact", [True, False])
def test_absorbing_radd_bound(exact):
    vocab, length = 2, 3
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear(1e-3))
    n = vocab + 1
    p0 = toy_data(vocab, length, seed=7)
    if exact:
        table = true_denoiser(p0, vocab, length)
    else:
        logits = np.random.default_rng(2).normal(size=(n**length, length, vocab))
        table = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    matrix = process.rate_matrix.matrix().numpy()
    q1 = sequence_transition(matrix, float(process.total(torch.tensor(1.0, dtype=torch.float64))), length, vocab)
    prior = p0 @ q1
    p_model = radd_reverse_marginal(table, vocab, length, prior)
    assert p_model.sum() == pytest.approx(1.0, abs=1e-10)
    with np.errstate(divide="ignore"):  # the true denoiser gives log 0 to tokens x_t rules out
        log_table = torch.as_tensor(np.log(table))
    bound = expected_loss(
        losses.TDCE(process), process, lambda x_t, t: log_table[sequence_index(x_t.numpy(), n)], vocab, length
    ) + kl_rows(q1, prior)
    nll = -np.log(p_model)
    assert np.all(bound >= nll - 1e-7)
    if exact:
        np.testing.assert_allclose(p_model, p0, rtol=1e-8)
        np.testing.assert_allclose(bound, nll, atol=1e-6)  # tight: E bound = data entropy
    else:
        assert np.mean(bound - nll) > 1e-3


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("prior_kind", ["forward", "uniform"])
def test_uniform_score_entropy_bound(exact, prior_kind):
    states, length = 3, 2
    process = ctmc.ForwardProcess(ctmc.Uniform(states), ctmc.LogLinear(1e-2))
    matrix = process.rate_matrix.matrix().numpy()
    p0 = toy_data(states, length, seed=11)
    noise = 0.0 if exact else 0.4 * np.random.default_rng(3).normal(size=(states**length, length, states))
    top = float(process.total(torch.tensor(1.0, dtype=torch.float64)))
    q1 = sequence_transition(matrix, top, length, states)
    prior = p0 @ q1 if prior_kind == "forward" else np.full(states**length, 1.0 / states**length)
    p_model = score_reverse_marginal(
        lambda total: noisy_exact_scores(p0, matrix, total, length, states, noise), matrix, top, length, prior
    )

    def output_at(x_t, t):
        total = float(process.total(t[:1]))
        scores = noisy_exact_scores(p0, matrix, total, length, states, noise)
        return torch.as_tensor(np.log(scores[sequence_index(x_t.numpy(), states)]))

    bound = expected_loss(losses.ScoreEntropy(process), process, output_at, states, length) + kl_rows(q1, prior)
    nll = -np.log(p_model)
    assert np.all(bound >= nll - 1e-6)
    if exact and prior_kind == "forward":
        np.testing.assert_allclose(p_model, p0, rtol=1e-6)
        np.testing.assert_allclose(bound, nll, atol=1e-5)
    elif not exact:
        assert np.mean(bound - nll) > 1e-3
