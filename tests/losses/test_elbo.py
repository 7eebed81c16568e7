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
    all_sequences,
    exact_scores,
    expected_loss,
    kl_rows,
    sequence_index,
    sequence_transition,
    toy_data,
    true_denoiser,
)
from scipy.integrate import solve_ivp
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
    # Reverse generator in the clock log(lambda): a masked position i of x becomes y at rate p_theta(y | x, i).
    xs = all_sequences(n, length)
    generator = np.zeros((len(xs), len(xs)))
    for k, x in enumerate(xs):
        for i in np.nonzero(x == vocab)[0]:
            for y in range(vocab):
                target = x.copy()
                target[i] = y
                generator[k, sequence_index(target, n)] += table[k, i, y]
    np.fill_diagonal(generator, -generator.sum(1))
    matrix = process.rate_matrix.matrix().numpy()
    q1 = sequence_transition(matrix, float(process.total(torch.tensor(1.0, dtype=torch.float64))), length, vocab)
    prior = p0 @ q1
    final = prior @ expm(200.0 * generator)  # log lambda runs from log(1 - eps) to -inf
    clean_index = sequence_index(all_sequences(vocab, length), n)
    p_model = final[clean_index]
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


def _uniform_model_scores(p0, matrix, total, length, clean, noise):
    p_t = p0 @ sequence_transition(matrix, total, length, clean)
    return exact_scores(p_t, matrix.shape[0], length) * np.exp(noise)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("prior_kind", ["forward", "uniform"])
def test_uniform_score_entropy_bound(exact, prior_kind):
    states, length = 3, 2
    process = ctmc.ForwardProcess(ctmc.Uniform(states), ctmc.LogLinear(1e-2))
    matrix = process.rate_matrix.matrix().numpy()
    p0 = toy_data(states, length, seed=11)
    noise = 0.0 if exact else 0.4 * np.random.default_rng(3).normal(size=(states**length, length, states))
    xs = all_sequences(states, length)
    top = float(process.total(torch.tensor(1.0, dtype=torch.float64)))

    def reverse_rhs(clock, p):  # clock = top - total, running from 0 (t = 1) to top (t = 0)
        scores = _uniform_model_scores(p0, matrix, top - clock, length, states, noise)
        flow = np.zeros_like(p)
        for i in range(length):
            for y in range(states):
                target = xs.copy()
                target[:, i] = y
                moving = (xs[:, i] != y) * scores[:, i, y] * matrix[y, xs[:, i]] * p
                np.add.at(flow, sequence_index(target, states), moving)
                flow -= moving
        return flow

    q1 = sequence_transition(matrix, top, length, states)
    prior = p0 @ q1 if prior_kind == "forward" else np.full(len(xs), 1.0 / len(xs))
    solution = solve_ivp(reverse_rhs, (0.0, top - 1e-9), prior, method="DOP853", rtol=1e-11, atol=1e-13)
    p_model = solution.y[:, -1]

    def output_at(x_t, t):
        total = float(process.total(t[:1]))
        scores = _uniform_model_scores(p0, matrix, total, length, states, noise)
        return torch.as_tensor(np.log(scores[sequence_index(x_t.numpy(), states)]))

    bound = expected_loss(losses.ScoreEntropy(process), process, output_at, states, length) + kl_rows(q1, prior)
    nll = -np.log(p_model)
    assert np.all(bound >= nll - 1e-6)
    if exact and prior_kind == "forward":
        np.testing.assert_allclose(p_model, p0, rtol=1e-6)
        np.testing.assert_allclose(bound, nll, atol=1e-5)
    elif not exact:
        assert np.mean(bound - nll) > 1e-3
