"""Sampling against its laws: sample_categorical vs binomial bounds on a tail count and zero-mass categories;
RateMatrix.sample, ForwardProcess.sample and DiscreteTimeChain.sample vs rows of scipy.linalg.expm(t Q) by a
chi-square test. Seeds are fixed; a chi-square or binomial check fails when its p-value is below 1e-6 (so a
correct sampler fails a given seed with probability 1e-6, while a wrong law of the sizes tested gives p ~ 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

import ctmc

P_VALUE_FLOOR = 1e-6


def chi_square_p_value(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square p-value of `counts` (k, n) against the rows `probs` (k, n), pooled over rows.

    Cells with expected count < 5 are merged into one cell per row; cells with probability 0 must be empty
    (a draw of a zero-probability state gives p = 0).
    """
    if (counts[probs == 0] > 0).any():
        return 0.0
    statistic, dof = 0.0, 0
    for row_counts, row_probs in zip(counts, probs, strict=True):
        expected = row_probs * row_counts.sum()
        big = expected >= 5
        observed = np.append(row_counts[big], row_counts[~big].sum())
        expect = np.append(expected[big], expected[~big].sum())
        keep = expect > 0
        statistic += (((observed - expect) ** 2)[keep] / expect[keep]).sum()
        dof += keep.sum() - 1
    return float(scipy.stats.chi2.sf(statistic, dof)) if dof > 0 else 1.0


def binomial_bounds(trials: int, p: float) -> tuple[int, int]:
    """Counts outside [low, high] have probability < 1e-6 under Binomial(trials, p)."""
    return int(scipy.stats.binom.ppf(P_VALUE_FLOOR / 2, trials, p)), int(
        scipy.stats.binom.isf(P_VALUE_FLOOR / 2, trials, p)
    )


def test_sample_categorical_tail_count_of_one_big_mass_and_many_tiny_ones():
    """One mass 1 and 500 masses 4e-6 (unnormalised): the number of tail draws in 200,000 is Binomial(200,000,
    q) with q = 2e-3 / (1 + 2e-3) (expected ~400); it must lie within the 1e-6 binomial bounds, and the big
    category's count is the complement (no draw outside [0, 501))."""
    probs = torch.cat([torch.ones(1, dtype=torch.float64), torch.full((500,), 4e-6, dtype=torch.float64)])
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([ctmc.sample_categorical(probs.expand(50_000, -1), generator) for _ in range(4)])
    assert draws.shape == (200_000,) and draws.dtype == torch.long and int(draws.min()) >= 0 and int(draws.max()) <= 500
    tail = int((draws > 0).sum())
    low, high = binomial_bounds(200_000, 2e-3 / (1 + 2e-3))
    assert low <= tail <= high, (low, tail, high)


def test_sample_categorical_tail_below_float32_resolution_is_reached():
    """Masses 2^-25 (half float32's 2^-24 spacing near 1) on 4,000 categories next to a mass 1: a float32
    inverse CDF cannot resolve them. Tail draws in 100,000 are Binomial(100,000, q), q = 4000 * 2^-25 /
    (1 + 4000 * 2^-25), expected 11.9: checked within the 1e-6 binomial bounds and > 0 (P(0) = e^-11.9 = 7e-6)."""
    tiny = 2.0**-25
    probs = torch.cat([torch.ones(1, dtype=torch.float64), torch.full((4000,), tiny, dtype=torch.float64)])
    generator = torch.Generator().manual_seed(1)
    draws = torch.cat([ctmc.sample_categorical(probs.expand(5_000, -1), generator) for _ in range(20)])
    tail = int((draws > 0).sum())
    low, high = binomial_bounds(100_000, 4000 * tiny / (1 + 4000 * tiny))
    assert max(low, 1) <= tail <= high, (low, tail, high)


def test_sample_categorical_never_draws_zero_mass():
    """Rows with zero-mass categories first, inside, last and around a single tiny (1e-300) or huge mass:
    100,000 draws per row only ever hit categories of positive mass; rows with one positive entry are exact."""
    probs = torch.tensor(
        [
            [0.0, 0.3, 0.0, 0.7, 0.0],
            [0.0, 0.0, 0.0, 0.0, 2.5],
            [1e-300, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1e300, 0.0, 0.0],
            [5.0, 0.0, 1e-12, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    draws = ctmc.sample_categorical(probs.expand(100_000, -1, -1), torch.Generator().manual_seed(2))
    hit = probs.expand(100_000, -1, -1).gather(-1, draws[..., None]).squeeze(-1)
    assert bool((hit > 0).all())
    assert bool((draws[:, 1] == 4).all()) and bool((draws[:, 2] == 0).all()) and bool((draws[:, 3] == 2).all())


def test_sample_categorical_frequencies_and_float32_input():
    """Unnormalised float32 weights (3, 7) -> 30,000 draws per row; chi-square vs the normalised weights."""
    weights = torch.rand(3, 7, generator=torch.Generator().manual_seed(3)) * torch.tensor([1.0, 0, 1, 1, 0, 1, 1])
    draws = ctmc.sample_categorical(weights.expand(30_000, -1, -1), torch.Generator().manual_seed(4))
    counts = np.stack([np.bincount(draws[:, r].numpy(), minlength=7) for r in range(3)])
    probs = weights.double().numpy() / weights.double().numpy().sum(1, keepdims=True)
    assert chi_square_p_value(counts, probs) > P_VALUE_FLOOR


def _dense(n: int, seed: int) -> ctmc.Dense:
    rng = np.random.default_rng(seed)
    rates = rng.exponential(size=(n, n)) * (rng.random((n, n)) < 0.6)
    np.fill_diagonal(rates, 0.0)
    return ctmc.Dense(rates - np.diag(rates.sum(axis=1)))


CHAINS = [ctmc.Uniform(6), ctmc.Absorbing(5), ctmc.BirthDeath(6, 0.7), _dense(6, 0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rate_matrix", CHAINS, ids=repr)
def test_rate_matrix_sample_frequencies_match_transition_rows(rate_matrix, dtype):
    """sample(x, t): 5,000 draws from every start state at t = 0.6 vs rows of scipy.linalg.expm(0.6 Q)
    (pooled chi-square, p > 1e-6)."""
    n, draws_per_state = rate_matrix.num_states, 5_000
    x = torch.arange(n).repeat(draws_per_state, 1)
    samples = rate_matrix.sample(x, torch.tensor(0.6, dtype=dtype), torch.Generator().manual_seed(5))
    assert samples.shape == x.shape and samples.dtype == torch.long
    counts = np.stack([np.bincount(samples[:, i].numpy(), minlength=n) for i in range(n)])
    assert chi_square_p_value(counts, scipy.linalg.expm(0.6 * rate_matrix.matrix().numpy())) > P_VALUE_FLOOR


def test_forward_process_and_discrete_chain_sample_frequencies():
    """ForwardProcess.sample(x0, t) vs rows of expm(total(t) Q) and DiscreteTimeChain.sample(x0, i) vs rows
    of the product of D3PM's one-step matrices (chi-square, p > 1e-6), with per-sequence times/steps."""
    chain = _dense(5, 1)
    q = chain.matrix().numpy()
    process = ctmc.ForwardProcess(chain, ctmc.LogLinear())
    x0 = torch.arange(5).repeat(2, 4000)  # (2, 20000): row b has time t[b]
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    samples = process.sample(x0, t[:, None], torch.Generator().manual_seed(6))
    for b in range(2):
        reference = scipy.linalg.expm(-np.log1p(-(1 - 1e-3) * t[b].item()) * q)
        counts = np.stack([np.bincount(samples[b, x0[b] == s].numpy(), minlength=5) for s in range(5)])
        assert chi_square_p_value(counts, reference) > P_VALUE_FLOOR
    betas = [0.1, 0.3, 0.2]
    discrete = ctmc.DiscreteTimeChain(chain, torch.tensor(betas, dtype=torch.float64))
    steps = torch.tensor([1, 3])[:, None]
    samples = discrete.sample(x0, steps, torch.Generator().manual_seed(7))
    one_step = [scipy.linalg.expm(-np.log1p(-beta) * q) for beta in betas]
    for b, reference in enumerate([one_step[0], one_step[0] @ one_step[1] @ one_step[2]]):
        counts = np.stack([np.bincount(samples[b, x0[b] == s].numpy(), minlength=5) for s in range(5)])
        assert chi_square_p_value(counts, reference) > P_VALUE_FLOOR


def test_structured_sample_at_gpt2_size():
    """Absorbing(50257) and Uniform(50258) on x of shape (8, 1024) at t = 0.7: the masked (moved) fraction is
    Binomial(8192, 1 - e^{-0.7}) (+ a 1/n redraw onto itself for Uniform) within 1e-6 bounds; Uniform's
    redrawn ids are uniform over 10 equal id ranges (chi-square); the generator makes draws reproducible."""
    x = torch.randint(0, 50257, (8, 1024), generator=torch.Generator().manual_seed(8))
    t = torch.tensor(0.7, dtype=torch.float64)
    moved = 1 - np.exp(-0.7)
    absorbing = ctmc.Absorbing(50257)
    draws = absorbing.sample(x, t, torch.Generator().manual_seed(9))
    assert bool(((draws == x) | (draws == absorbing.mask_index)).all())
    low, high = binomial_bounds(x.numel(), moved)
    assert low <= int((draws == absorbing.mask_index).sum()) <= high
    uniform = ctmc.Uniform(50258)
    draws = uniform.sample(x, t, torch.Generator().manual_seed(9))
    assert torch.equal(draws, uniform.sample(x, t, torch.Generator().manual_seed(9)))
    low, high = binomial_bounds(x.numel(), moved * (1 - 1 / 50258))
    changed = draws != x
    assert low <= int(changed.sum()) <= high
    buckets = np.bincount(draws[changed].numpy() * 10 // 50258, minlength=10)
    assert chi_square_p_value(buckets[None], np.full((1, 10), 0.1)) > P_VALUE_FLOOR
