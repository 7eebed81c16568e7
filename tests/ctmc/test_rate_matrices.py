"""Rate matrices against independent references: scipy.linalg.expm, explicit numpy matrices, closed forms.

Tolerances: float64 results are compared to scipy.linalg.expm at 1e-10 (absolute; entries are probabilities).
float32 results at 1e-6 * (1 + t * max exit rate): rounding t to float32 moves P(t) by up to
2^-24 * t * |P'(t)| <= 6e-8 * t * 2 max exit rate, plus ~1e-7 for rounding the result and float32 exp.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from ctmc_strategies import DTYPES, max_exit_rate, rate_matrices, times
from hypothesis import given
from hypothesis import strategies as st

import ctmc

FLOAT64_ATOL = 1e-10


def float32_atol(t: float, rate_matrix: ctmc.RateMatrix) -> float:
    return 1e-6 * (1.0 + t * max_exit_rate(rate_matrix))


def expm(rate_matrix: ctmc.RateMatrix, t: float) -> np.ndarray:
    """The reference P(t) = scipy.linalg.expm(t Q) from the dense float64 generator."""
    return scipy.linalg.expm(t * rate_matrix.matrix().numpy())


@given(rate_matrices(), times(), DTYPES)
def test_transition_equals_scipy_expm(rate_matrix, t, dtype):
    """transition(t) vs scipy.linalg.expm(t Q), all four classes, float64 at 1e-10, float32 at its tolerance."""
    got = rate_matrix.transition(torch.tensor(t, dtype=dtype))
    assert got.dtype == dtype and got.shape == (rate_matrix.num_states,) * 2
    atol = FLOAT64_ATOL if dtype == torch.float64 else float32_atol(t, rate_matrix)
    np.testing.assert_allclose(got.double().numpy(), expm(rate_matrix, t), rtol=0, atol=atol)


@given(rate_matrices(), st.lists(times(), min_size=1, max_size=4))
def test_batched_transition_equals_stack_of_expm(rate_matrix, ts):
    """transition on a (k,) time tensor vs scipy.linalg.expm at each time, stacked."""
    got = rate_matrix.transition(torch.tensor(ts, dtype=torch.float64))
    reference = np.stack([expm(rate_matrix, t) for t in ts])
    np.testing.assert_allclose(got.numpy(), reference, rtol=0, atol=FLOAT64_ATOL)


@given(rate_matrices(), st.integers(0, 2**32 - 1), DTYPES)
def test_row_and_column_methods_equal_rows_and_columns_of_expm(rate_matrix, seed, dtype):
    """transition_from / transition_to vs rows / columns of scipy.linalg.expm(t_b Q), per-sequence times t[:, None]."""
    rng = np.random.default_rng(seed)
    n = rate_matrix.num_states
    x = torch.from_numpy(rng.integers(0, n, size=(3, 5)))
    t = rng.uniform(0.0, 3.0, size=3)
    reference = np.stack([expm(rate_matrix, tb) for tb in t])  # (3, n, n)
    t_tensor = torch.tensor(t, dtype=dtype)[:, None]
    rows = rate_matrix.transition_from(x, t_tensor)
    columns = rate_matrix.transition_to(x, t_tensor)
    assert rows.shape == columns.shape == (3, 5, n) and rows.dtype == columns.dtype == dtype
    atol = FLOAT64_ATOL if dtype == torch.float64 else float32_atol(3.0, rate_matrix)
    batch = np.arange(3)[:, None]
    np.testing.assert_allclose(rows.double().numpy(), reference[batch, x.numpy(), :], rtol=0, atol=atol)
    np.testing.assert_allclose(columns.double().numpy(), reference[batch, :, x.numpy()], rtol=0, atol=atol)


@given(rate_matrices(), st.integers(0, 2**32 - 1))
def test_propagate_equals_distribution_times_expm(rate_matrix, seed):
    """propagate(p, t) vs p @ scipy.linalg.expm(t Q) for random distributions and (B,) times."""
    rng = np.random.default_rng(seed)
    n = rate_matrix.num_states
    p = rng.dirichlet(np.ones(n), size=4)
    t = rng.uniform(0.0, 3.0, size=4)
    got = rate_matrix.propagate(torch.from_numpy(p), torch.from_numpy(t))
    reference = np.stack([p[b] @ expm(rate_matrix, t[b]) for b in range(4)])
    np.testing.assert_allclose(got.numpy(), reference, rtol=0, atol=FLOAT64_ATOL)


@given(rate_matrices(), st.integers(0, 2**32 - 1))
def test_outgoing_and_incoming_rates_equal_rows_and_columns_of_matrix(rate_matrix, seed):
    """outgoing_rates(x) == matrix()[x, :] and incoming_rates(x) == matrix()[:, x] exactly, float64."""
    n = rate_matrix.num_states
    x = torch.from_numpy(np.random.default_rng(seed).integers(0, n, size=(2, 6)))
    q = rate_matrix.matrix().numpy()
    outgoing, incoming = rate_matrix.outgoing_rates(x), rate_matrix.incoming_rates(x)
    assert outgoing.dtype == incoming.dtype == torch.float64
    np.testing.assert_allclose(outgoing.numpy(), q[x.numpy(), :], rtol=0, atol=1e-15)
    np.testing.assert_allclose(incoming.numpy(), np.moveaxis(q[:, x.numpy()], 0, -1), rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_uniform_and_absorbing_matrices_equal_their_definitions(n):
    """Uniform: 11^T/n - I (SEDD); Absorbing: -I plus a column of ones at the mask, zero mask row (numpy)."""
    np.testing.assert_allclose(ctmc.Uniform(n).matrix().numpy(), np.ones((n, n)) / n - np.eye(n), rtol=0, atol=1e-15)
    absorbing = ctmc.Absorbing(n - 1)
    expected = -np.eye(n)
    expected[:, n - 1] += 1.0
    assert absorbing.mask_index == n - 1 == absorbing.num_states - 1
    np.testing.assert_array_equal(absorbing.matrix().numpy(), expected)
    assert absorbing.matrix(dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize(("n", "rate"), [(2, 1.0), (5, 0.3), (12, 2.5)])
def test_birth_death_matches_its_spectral_closed_form(n, rate):
    """BirthDeath: tridiagonal numpy matrix; P(t) vs the DCT-II spectral form
    sum_k e^{-2r(1-cos(pi k/n))t} v_k v_k^T."""
    chain = ctmc.BirthDeath(n, rate)
    q = np.diag(np.full(n - 1, rate), 1) + np.diag(np.full(n - 1, rate), -1)
    q -= np.diag(q.sum(axis=1))
    np.testing.assert_array_equal(chain.matrix().numpy(), q)
    k = np.arange(n)
    eigenvalues = -2.0 * rate * (1.0 - np.cos(np.pi * k / n))
    vectors = np.cos(np.pi * np.outer(np.arange(n) + 0.5, k) / n)  # column k is the k-th DCT-II vector
    vectors /= np.linalg.norm(vectors, axis=0)
    for t in (0.0, 0.37, 4.0):
        reference = (vectors * np.exp(eigenvalues * t)) @ vectors.T
        np.testing.assert_allclose(
            chain.transition(torch.tensor(t, dtype=torch.float64)).numpy(), reference, atol=1e-12
        )


@pytest.mark.parametrize("rate", [1.0, 3.7])
def test_defective_generator_uses_matrix_exp_fallback(rate):
    """Jordan-like chain 0 -> 1 -> 2 at equal rates (not diagonalisable): is_diagonalised is False and P(t)
    equals the closed form P[0] = (e^{-rt}, rt e^{-rt}, 1 - e^{-rt} - rt e^{-rt}) and scipy.linalg.expm."""
    q = torch.tensor([[-rate, rate, 0.0], [0.0, -rate, rate], [0.0, 0.0, 0.0]], dtype=torch.float64)
    chain = ctmc.Dense(q)
    assert not chain.is_diagonalised
    for t in (0.0, 0.25, 1.3, 6.0):
        decay = np.exp(-rate * t)
        closed = np.array(
            [
                [decay, rate * t * decay, 1.0 - decay - rate * t * decay],
                [0.0, decay, 1.0 - decay],
                [0.0, 0.0, 1.0],
            ]
        )
        t64 = torch.tensor(t, dtype=torch.float64)
        np.testing.assert_allclose(chain.transition(t64).numpy(), closed, rtol=0, atol=1e-13)
        np.testing.assert_allclose(chain.transition(t64).numpy(), scipy.linalg.expm(t * q.numpy()), atol=1e-13)
        x = torch.tensor([0, 1, 2, 0])
        np.testing.assert_allclose(chain.transition_from(x, t64).numpy(), closed[x.numpy()], atol=1e-13)
        np.testing.assert_allclose(chain.transition_to(x, t64).numpy(), closed[:, x.numpy()].T, atol=1e-13)


def test_diagonalisable_dense_generator_uses_eigendecomposition():
    """A generic random generator (distinct eigenvalues) takes the eigendecomposition path; checked vs expm."""
    rng = np.random.default_rng(0)
    rates = rng.exponential(size=(6, 6))
    np.fill_diagonal(rates, 0.0)
    q = rates - np.diag(rates.sum(axis=1))
    chain = ctmc.Dense(q)
    assert chain.is_diagonalised
    np.testing.assert_allclose(
        chain.transition(torch.tensor(0.8, dtype=torch.float64)).numpy(), scipy.linalg.expm(0.8 * q)
    )


class _DenseForbidden(AssertionError):
    pass


def _forbid_dense(monkeypatch, rate_matrix):
    def refuse(*args, **kwargs):
        raise _DenseForbidden("the structured methods must not build an n x n matrix")

    monkeypatch.setattr(rate_matrix, "_transition", refuse)
    monkeypatch.setattr(rate_matrix, "matrix", refuse)


GPT2_VOCAB = 50257


def test_absorbing_at_gpt2_size_without_dense_matrix(monkeypatch):
    """Absorbing(50257): rows, columns, propagate, rates and sample vs the closed form e^{-t}, 1 - e^{-t},
    with matrix() and the dense transition disabled (they would need 50258^2 entries)."""
    chain = ctmc.Absorbing(GPT2_VOCAB)
    _forbid_dense(monkeypatch, chain)
    n, mask = GPT2_VOCAB + 1, GPT2_VOCAB
    x = torch.tensor([[0, 17, mask], [GPT2_VOCAB - 1, mask, 5]])
    t = torch.tensor([0.3, 2.0], dtype=torch.float64)[:, None]
    rows = chain.transition_from(x, t)
    assert rows.shape == (2, 3, n) and rows.dtype == torch.float64
    np.testing.assert_allclose(rows.sum(-1).numpy(), 1.0, atol=1e-12)
    assert rows[0, 1, 17].item() == pytest.approx(np.exp(-0.3), abs=1e-15)
    assert rows[0, 1, mask].item() == pytest.approx(1 - np.exp(-0.3), abs=1e-15)
    assert rows[1, 0, GPT2_VOCAB - 1].item() == pytest.approx(np.exp(-2.0), abs=1e-15)
    assert rows[0, 2, mask].item() == 1.0 and rows[0, 2, :mask].abs().max().item() == 0.0
    assert int((rows[0, 1] > 0).sum()) == 2
    columns = chain.transition_to(x, t)
    assert columns.shape == (2, 3, n)
    assert columns[0, 2, 123].item() == pytest.approx(1 - np.exp(-0.3), abs=1e-15) and columns[0, 2, mask].item() == 1.0
    assert columns[0, 1, 17].item() == pytest.approx(np.exp(-0.3), abs=1e-15) and int((columns[0, 1] > 0).sum()) == 1
    p = torch.zeros(n, dtype=torch.float64)
    p[[3, 9, mask]] = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    pushed = chain.propagate(p, torch.tensor(1.0, dtype=torch.float64))
    assert pushed[3].item() == pytest.approx(0.5 * np.exp(-1.0)) and pushed[mask].item() == pytest.approx(
        0.25 + 0.75 * (1 - np.exp(-1.0))
    )
    assert chain.outgoing_rates(x)[0, 1, mask].item() == 1.0 and chain.incoming_rates(x)[0, 2, 40000].item() == 1.0
    draws = chain.sample(x, t, generator=torch.Generator().manual_seed(0))
    assert draws.shape == x.shape and draws.dtype == torch.long
    assert bool(((draws == x) | (draws == mask)).all())


def test_uniform_at_gpt2_size_without_dense_matrix(monkeypatch):
    """Uniform(50258): rows/columns vs the closed form (1 - e^{-t})/n + e^{-t}[y = x], with the dense path disabled."""
    n = GPT2_VOCAB + 1
    chain = ctmc.Uniform(n)
    _forbid_dense(monkeypatch, chain)
    x = torch.tensor([[0, 50000, n - 1], [7, 7, 123]])
    t = torch.tensor([0.5, 3.0], dtype=torch.float32)[:, None]
    rows = chain.transition_from(x, t)
    assert rows.shape == (2, 3, n) and rows.dtype == torch.float32
    move = -np.expm1(-0.5) / n
    assert rows[0, 1, 50000].item() == pytest.approx(np.exp(-0.5) + move, rel=1e-6)
    assert rows[0, 1, 3].item() == pytest.approx(move, rel=1e-6)
    np.testing.assert_allclose(rows.double().sum(-1).numpy(), 1.0, atol=1e-5)
    torch.testing.assert_close(chain.transition_to(x, t), rows)
    draws = chain.sample(x, t, generator=torch.Generator().manual_seed(0))
    assert draws.shape == x.shape and draws.dtype == torch.long and bool(((draws >= 0) & (draws < n)).all())


def test_column_convention_round_trip_and_sedd_absorbing():
    """from/to_column_convention are transposes and inverse to each other; SEDD's column-convention absorbing
    matrix (row of ones at the bottom) converts to ctmc.Absorbing's matrix."""
    rng = np.random.default_rng(3)
    rates = rng.exponential(size=(5, 5))
    np.fill_diagonal(rates, 0.0)
    q = torch.from_numpy(rates - np.diag(rates.sum(axis=1)))
    column = ctmc.to_column_convention(q)
    np.testing.assert_array_equal(column.numpy(), q.numpy().T)
    np.testing.assert_array_equal(ctmc.from_column_convention(column).numpy(), q.numpy())
    sedd_absorbing = -np.eye(4)
    sedd_absorbing[-1, :] += 1.0  # column convention: Q_col[mask, i] = rate i -> mask
    converted = ctmc.from_column_convention(torch.from_numpy(sedd_absorbing))
    np.testing.assert_array_equal(converted.numpy(), ctmc.Absorbing(3).matrix().numpy())


@pytest.mark.parametrize("check", [ctmc.validate_generator, ctmc.Dense])
def test_column_convention_matrix_is_rejected_with_hint(check):
    """A column-convention generator (columns sum to 0, rows do not) is refused, pointing to from_column_convention."""
    sedd_absorbing = -np.eye(4)
    sedd_absorbing[-1, :] += 1.0
    with pytest.raises(ValueError, match="from_column_convention"):
        check(torch.from_numpy(sedd_absorbing))
