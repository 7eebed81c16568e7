"""Regression tests for boundary behaviour found in review (each compares with an explicit expectation)."""

import pytest
import torch

import ctmc


def test_reverse_rates_per_sequence_sigma_must_be_given_per_position():
    """A (B,) sigma with (B, L) ids is ambiguous when B == L; it must be refused, not silently misapplied."""
    rate_matrix = ctmc.Absorbing(3)
    x = torch.full((4, 4), 3)
    score = torch.rand(4, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"sigma.*\[:, None\]"):
        ctmc.reverse_rates(rate_matrix, x, score, torch.rand(4, dtype=torch.float64))
    sigma = torch.rand(4, dtype=torch.float64)
    rates = ctmc.reverse_rates(rate_matrix, x, score, sigma[:, None])
    reference = ctmc.reverse_rates(rate_matrix, x, score, 1.0) * sigma[:, None, None]
    torch.testing.assert_close(rates, reference, rtol=0, atol=1e-15)


@pytest.mark.parametrize("sigma", [-1.0, float("nan")])
def test_reverse_rates_rejects_invalid_sigma(sigma):
    """sigma is a rate: negative or nan values are refused with the argument named."""
    x = torch.full((2, 3), 3)
    with pytest.raises(ValueError, match="sigma"):
        ctmc.reverse_rates(ctmc.Absorbing(3), x, torch.ones(2, 3, 4), sigma)


@pytest.mark.parametrize(
    "probs", [torch.zeros(2, 5), torch.tensor([[0.5, -0.1, 0.6]]), torch.tensor([[1.0, float("nan")]])]
)
def test_sample_categorical_rejects_rows_it_cannot_sample(probs):
    """A row with no mass, a negative or a nan weight has no categorical law: ValueError, never index n."""
    with pytest.raises(ValueError, match="probs"):
        ctmc.sample_categorical(probs)


@pytest.mark.parametrize(
    "rate_matrix", [ctmc.Uniform(4), ctmc.Absorbing(3), ctmc.BirthDeath(4), ctmc.Dense(ctmc.BirthDeath(4).matrix())]
)
def test_propagate_returns_promoted_dtype(rate_matrix):
    """Every class returns the promotion of p's and t's dtypes, and agrees with p @ expm rows in float64."""
    p = torch.softmax(torch.randn(2, rate_matrix.num_states, dtype=torch.float64), -1)
    out = rate_matrix.propagate(p, 0.3)
    assert out.dtype == torch.float64
    reference = p @ torch.linalg.matrix_exp(0.3 * rate_matrix.matrix())
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    assert rate_matrix.propagate(p.float(), torch.tensor(0.3, dtype=torch.float64)).dtype == torch.float64


def test_from_column_convention_on_a_row_convention_matrix_says_so():
    """Converting a matrix that already follows the row convention is refused with the right advice."""
    q = ctmc.Absorbing(3).matrix()
    with pytest.raises(ValueError, match="already follows the row convention"):
        ctmc.from_column_convention(q)
    torch.testing.assert_close(ctmc.from_column_convention(q.T), q)


def test_num_clean_states_excludes_only_the_absorbing_mask():
    """Clean tokens: the vocabulary for Absorbing (mask excluded), every state otherwise."""
    assert ctmc.Absorbing(7).num_clean_states == 7
    assert ctmc.Uniform(7).num_clean_states == 7
    assert ctmc.BirthDeath(5).num_clean_states == 5
