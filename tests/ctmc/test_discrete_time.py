"""DiscreteTimeChain (D3PM view) against D3PM's formulas and brute-force Bayes' rule by enumeration.

References: the one-step matrices (1 - beta) I + beta 11^T / n (uniform) and (1 - beta) I + beta 1 e_m^T
(absorbing) written in numpy, scipy.linalg.expm(tau Q) with tau = -log(1 - beta) for dense chains, products of
one-step matrices for Q-bar, and the joint q(x0, x_{i-1}, x_i) = Q-bar_{i-1}[x0, a] Q_i[a, b] enumerated in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

import ctmc


def d3pm_step(rate_matrix: ctmc.RateMatrix, beta: float) -> np.ndarray:
    """The reference one-step matrix Q_i: D3PM's closed forms, or expm(tau Q) for a dense chain."""
    n = rate_matrix.num_states
    if isinstance(rate_matrix, ctmc.Uniform):
        return (1 - beta) * np.eye(n) + beta * np.ones((n, n)) / n
    if isinstance(rate_matrix, ctmc.Absorbing):
        ones_to_mask = np.zeros((n, n))
        ones_to_mask[:, rate_matrix.mask_index] = 1.0
        return (1 - beta) * np.eye(n) + beta * ones_to_mask
    return scipy.linalg.expm(-np.log1p(-beta) * rate_matrix.matrix().numpy())


def dense_chain(n: int, seed: int) -> ctmc.Dense:
    rng = np.random.default_rng(seed)
    rates = rng.exponential(size=(n, n))
    np.fill_diagonal(rates, 0.0)
    return ctmc.Dense(rates - np.diag(rates.sum(axis=1)))


CHAINS = st.one_of(
    st.integers(2, 6).map(ctmc.Uniform),
    st.integers(1, 5).map(ctmc.Absorbing),
    st.builds(dense_chain, st.integers(2, 6), st.integers(0, 2**32 - 1)),
)
BETAS = st.lists(st.floats(0.01, 0.6), min_size=1, max_size=6)


def reference_matrices(rate_matrix, betas):
    """(steps, cumulative): steps[i - 1] = Q_i, cumulative[i] = Q_1 ... Q_i (cumulative[0] = I)."""
    steps = [d3pm_step(rate_matrix, beta) for beta in betas]
    cumulative = [np.eye(rate_matrix.num_states)]
    for step in steps:
        cumulative.append(cumulative[-1] @ step)
    return steps, cumulative


@given(CHAINS, BETAS)
def test_step_and_cumulative_matrices_equal_d3pm(rate_matrix, betas):
    """step_matrix(i) vs D3PM's Q_i and cumulative_matrix(i) vs the product Q_1 ... Q_i, float64 at 1e-12."""
    chain = ctmc.DiscreteTimeChain(rate_matrix, torch.tensor(betas, dtype=torch.float64))
    steps, cumulative = reference_matrices(rate_matrix, betas)
    for i in range(1, len(betas) + 1):
        np.testing.assert_allclose(chain.step_matrix(i).numpy(), steps[i - 1], rtol=0, atol=1e-12)
    for i in range(len(betas) + 1):
        np.testing.assert_allclose(chain.cumulative_matrix(i).numpy(), cumulative[i], rtol=0, atol=1e-12)
    batched = chain.step_matrix(torch.arange(1, len(betas) + 1))
    np.testing.assert_allclose(batched.numpy(), np.stack(steps), rtol=0, atol=1e-12)


@given(CHAINS, BETAS, st.data())
def test_posterior_equals_bayes_rule_by_enumeration(rate_matrix, betas, data):
    """posterior(x_i, x0, i) vs q(x_{i-1} = a | x_i = b, x0) = joint[x0, a, b] / sum_a joint[x0, a, b], with
    joint[x0, a, b] = Q-bar_{i-1}[x0, a] Q_i[a, b] enumerated in numpy; every (x0, b) of positive probability.
    x0 given as ids and as one-hot probabilities (which must agree), float64 at 1e-12 + 1e-15 / p(x0, b): the
    posterior of a rare pair divides by its small probability p(x0, b), which scales the round-off of the matrix
    entries (~1e-16 absolute) by 1 / p."""
    n = rate_matrix.num_states
    chain = ctmc.DiscreteTimeChain(rate_matrix, torch.tensor(betas, dtype=torch.float64))
    steps, cumulative = reference_matrices(rate_matrix, betas)
    i = data.draw(st.integers(1, len(betas)), label="i")
    joint = cumulative[i - 1][:, :, None] * steps[i - 1][None, :, :]  # [x0, a, b]
    x0, b = np.nonzero(joint.sum(axis=1) > 1e-300)
    expected = joint[x0, :, b] / joint[x0, :, b].sum(axis=1, keepdims=True)
    x0_ids, b_ids = torch.from_numpy(x0), torch.from_numpy(b)
    tolerance = 1e-12 + 1e-15 / joint[x0, :, b].sum(axis=1, keepdims=True)
    one_hot = torch.nn.functional.one_hot(x0_ids, n).double()
    for got in (chain.posterior(b_ids, x0_ids, i), chain.posterior(b_ids, one_hot, i)):
        error = np.abs(got.numpy() - expected)
        assert (error <= tolerance).all(), f"max error {error.max():.3g} beyond tolerance {tolerance.min():.3g}"


@given(CHAINS, BETAS, st.integers(0, 2**32 - 1), st.data())
def test_posterior_with_x0_probabilities_is_the_mixture_over_x0(rate_matrix, betas, seed, data):
    """x0 as probabilities p(x0): posterior vs sum_x0 p(x0) joint[x0, a, b], normalised over a (D3PM eq. 5
    by enumeration), float64 at 1e-12 and float32 at 1e-5."""
    n = rate_matrix.num_states
    chain = ctmc.DiscreteTimeChain(rate_matrix, torch.tensor(betas, dtype=torch.float64))
    steps, cumulative = reference_matrices(rate_matrix, betas)
    i = data.draw(st.integers(1, len(betas)), label="i")
    probs = np.random.default_rng(seed).dirichlet(np.ones(n), size=n)  # one distribution per x_i = b
    joint = cumulative[i - 1][:, :, None] * steps[i - 1][None, :, :]
    mixture = np.einsum("bx,xab->ba", probs, joint)
    expected = mixture / mixture.sum(axis=1, keepdims=True)
    b = torch.arange(n)
    got = chain.posterior(b, torch.from_numpy(probs), torch.full((n,), i))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    low = chain.posterior(b, torch.from_numpy(probs).float(), i)
    assert low.dtype == torch.float32
    np.testing.assert_allclose(low.double().numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("num_steps", [1, 4, 10])
def test_linear_mutual_information_schedule_masks_everything_at_the_end(num_steps):
    """betas = 1 / (T - i + 1) (D3PM); Q-bar_i of the absorbing chain keeps a token with probability
    prod_j (1 - beta_j) = (T - i) / T, so Q-bar_T sends every state to the mask."""
    chain = ctmc.DiscreteTimeChain.linear_mutual_information(ctmc.Absorbing(4), num_steps)
    steps = np.arange(1, num_steps + 1)
    np.testing.assert_allclose(chain.betas.numpy(), 1.0 / (num_steps - steps + 1), rtol=1e-15)
    for i in range(num_steps + 1):
        keep = chain.cumulative_matrix(i).numpy()[0, 0]
        assert keep == pytest.approx((num_steps - i) / num_steps, abs=1e-12)
    final = chain.cumulative_matrix(num_steps).numpy()
    np.testing.assert_allclose(final[:, 4], 1.0, atol=1e-12)
