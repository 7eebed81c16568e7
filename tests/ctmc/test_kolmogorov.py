"""Identities every transition matrix must satisfy, checked on random generators with hypothesis.

P(0) = I; rows of P(t) are probability vectors; Chapman-Kolmogorov P(s + t) = P(s) P(t); the forward and
backward Kolmogorov equations P'(t) = P(t) Q = Q P(t), with P'(t) taken by central finite differences.
The references are the identities themselves, evaluated with numpy in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from ctmc_strategies import DTYPES, max_exit_rate, rate_matrices, times
from hypothesis import given

# float64: rounding error of P(t) is ~1e-13 here (see test_rate_matrices); float32: ~1e-7 per entry, times n.
ATOL = {torch.float64: 1e-10, torch.float32: 2e-6}


@given(rate_matrices(), DTYPES)
def test_transition_at_zero_is_identity(rate_matrix, dtype):
    """P(0) vs the identity matrix (numpy eye)."""
    got = rate_matrix.transition(torch.zeros((), dtype=dtype))
    np.testing.assert_allclose(got.double().numpy(), np.eye(rate_matrix.num_states), rtol=0, atol=ATOL[dtype])


@given(rate_matrices(), times(50.0), DTYPES)
def test_rows_are_probability_vectors(rate_matrix, t, dtype):
    """Rows of P(t): entries >= 0 exactly and sums equal to 1 (numpy sum in float64) within ATOL[dtype] * n."""
    got = rate_matrix.transition(torch.tensor(t, dtype=dtype)).double().numpy()
    assert (got >= 0).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=ATOL[dtype] * rate_matrix.num_states)


@given(rate_matrices(), times(), times())
def test_chapman_kolmogorov(rate_matrix, s, t):
    """P(s + t) vs the numpy product P(s) @ P(t), float64, at 1e-10."""
    as64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    product = rate_matrix.transition(as64(s)).numpy() @ rate_matrix.transition(as64(t)).numpy()
    np.testing.assert_allclose(rate_matrix.transition(as64(s + t)).numpy(), product, rtol=0, atol=1e-10)


@given(rate_matrices(), times(3.0))
def test_forward_and_backward_kolmogorov_equations(rate_matrix, t):
    """Central difference (P(t + h) - P(t - h)) / 2h vs P(t) Q (forward) and Q P(t) (backward), float64.

    The step is h = 1e-5 / max exit rate |Q|, so that the truncation error h^2 |Q|^3 / 6 ~ 2e-11 |Q| and the
    rounding error ~1e-13 / h ~ 1e-8 |Q| stay below the tolerance 5e-8 |Q|. t is kept >= h (one-sided at 0).
    """
    scale = max_exit_rate(rate_matrix)
    h = 1e-5 / max(scale, 1e-3)
    t = max(t, h)
    q = rate_matrix.matrix().numpy()
    at = lambda v: rate_matrix.transition(torch.tensor(v, dtype=torch.float64)).numpy()  # noqa: E731
    derivative = (at(t + h) - at(t - h)) / (2 * h)
    p = at(t)
    atol = 5e-8 * max(scale, 1e-3)
    np.testing.assert_allclose(derivative, p @ q, rtol=0, atol=atol)
    np.testing.assert_allclose(derivative, q @ p, rtol=0, atol=atol)


@given(rate_matrices(), times(3.0))
def test_propagate_solves_the_forward_equation_for_distributions(rate_matrix, t):
    """d/dt (p P(t)) by central differences vs (p P(t)) Q, for p uniform over the states; as above."""
    scale = max_exit_rate(rate_matrix)
    h = 1e-5 / max(scale, 1e-3)
    t = max(t, h)
    n = rate_matrix.num_states
    p = torch.full((n,), 1.0 / n, dtype=torch.float64)
    at = lambda v: rate_matrix.propagate(p, torch.tensor(v, dtype=torch.float64)).numpy()  # noqa: E731
    derivative = (at(t + h) - at(t - h)) / (2 * h)
    np.testing.assert_allclose(derivative, at(t) @ rate_matrix.matrix().numpy(), rtol=0, atol=5e-8 * max(scale, 1e-3))
