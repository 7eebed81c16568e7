"""reverse_rates against a brute-force construction from a dense Q and an explicit marginal p_t, and against
the time-reversal identity p_t R_t = -p_t Q_t (the reverse chain runs the forward equation backwards)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from ctmc_strategies import rate_matrices
from hypothesis import given
from hypothesis import strategies as st

import ctmc


def explicit_marginal(rate_matrix: ctmc.RateMatrix, seed: int, total: float) -> np.ndarray:
    """p_t = p_0 expm(total Q) for a random full-support p_0 (numpy / scipy), strictly positive."""
    p0 = np.random.default_rng(seed).dirichlet(np.ones(rate_matrix.num_states))
    return p0 @ scipy.linalg.expm(total * rate_matrix.matrix().numpy())


def brute_force_reverse(q: np.ndarray, p: np.ndarray, sigma: float) -> np.ndarray:
    """R[x, y] = sigma Q[y, x] p(y) / p(x) for y != x by explicit loops; R[x, x] = -sum of the row."""
    n = q.shape[0]
    rates = np.zeros((n, n))
    for x in range(n):
        for y in range(n):
            if y != x:
                rates[x, y] = sigma * q[y, x] * p[y] / p[x]
        rates[x, x] = -rates[x].sum()
    return rates


@given(rate_matrices(max_log10_rate=1.0), st.integers(0, 2**32 - 1), st.floats(0.01, 2.0), st.floats(0.1, 5.0))
def test_reverse_rates_equal_brute_force_from_marginal(rate_matrix, seed, total, sigma):
    """reverse_rates(Q, x, score = p_t(y) / p_t(x), sigma) vs the double loop above, for every x, float64;
    rows sum to 0 (atol 1e-12 times the largest rate)."""
    p = explicit_marginal(rate_matrix, seed, total)
    n = rate_matrix.num_states
    x = torch.arange(n)
    score = torch.from_numpy(p[None, :] / p[:, None])  # score[x, y] = p(y) / p(x)
    got = ctmc.reverse_rates(rate_matrix, x, score, sigma).numpy()
    reference = brute_force_reverse(rate_matrix.matrix().numpy(), p, sigma)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(got, reference, rtol=1e-12, atol=1e-13 * scale)
    np.testing.assert_allclose(got.sum(axis=1), 0.0, atol=1e-12 * scale)


@given(rate_matrices(max_log10_rate=1.0), st.integers(0, 2**32 - 1), st.floats(0.01, 2.0), st.floats(0.1, 5.0))
def test_reverse_generator_runs_the_forward_equation_backwards(rate_matrix, seed, total, sigma):
    """Time reversal: with the true score, sum_x p_t(x) R(x -> y) = -(p_t sigma Q)[y] (numpy), i.e. the
    reverse chain's forward equation is the forward chain's run backwards in time."""
    p = explicit_marginal(rate_matrix, seed, total)
    n = rate_matrix.num_states
    score = torch.from_numpy(p[None, :] / p[:, None])
    reverse = ctmc.reverse_rates(rate_matrix, torch.arange(n), score, sigma).numpy()
    forward_flow = p @ (sigma * rate_matrix.matrix().numpy())
    np.testing.assert_allclose(p @ reverse, -forward_flow, rtol=0, atol=1e-11 * max(1.0, np.abs(forward_flow).max()))


def test_reverse_rates_per_sequence_sigma_and_ignored_diagonal_score():
    """(B, L) tokens, (B, L, n) scores and per-sequence sigma[:, None]: each position vs the brute-force formula;
    the score's entry at y = x does not change the result."""
    rng = np.random.default_rng(0)
    chain = ctmc.Absorbing(4)
    x = torch.from_numpy(rng.integers(0, 5, size=(2, 3)))
    score = torch.from_numpy(rng.uniform(0.1, 3.0, size=(2, 3, 5)))
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    got = ctmc.reverse_rates(chain, x, score, sigma[:, None]).numpy()
    q = chain.matrix().numpy()
    for b in range(2):
        for i in range(3):
            xi = int(x[b, i])
            expected = sigma[b].item() * q[:, xi] * score[b, i].numpy()
            expected[xi] = 0.0
            expected[xi] = -expected.sum()
            np.testing.assert_allclose(got[b, i], expected, rtol=1e-14, atol=1e-15)
    changed = score.clone()
    changed.scatter_(-1, x[..., None], 1e6)
    np.testing.assert_array_equal(ctmc.reverse_rates(chain, x, changed, sigma[:, None]).numpy(), got)


def test_reverse_rates_keep_the_score_dtype():
    """A float32 score gives float32 rates close to the float64 ones (relative 1e-6)."""
    chain = ctmc.Uniform(6)
    x = torch.tensor([[0, 5, 2]])
    score = torch.rand(1, 3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    low = ctmc.reverse_rates(chain, x, score.float(), 1.5)
    assert low.dtype == torch.float32
    np.testing.assert_allclose(low.double().numpy(), ctmc.reverse_rates(chain, x, score, 1.5).numpy(), rtol=1e-6)
