"""Hypothesis strategies for the `ctmc` tests: random valid generators and the rate-matrix objects built on them.

Generators are drawn from a seed (numpy), which keeps the examples cheap while covering: dense and sparse
off-diagonal patterns, rates of one scale and rates spread over five orders of magnitude (1e-3 .. 1e2), and
sizes 2..12. Every strategy returns float64 data; tests cast to float32 where they check that dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

import ctmc

MIN_STATES, MAX_STATES = 2, 12
DTYPES = st.sampled_from([torch.float32, torch.float64])


@st.composite
def generator_arrays(draw: st.DrawFn, max_log10_rate: float = 2.0) -> np.ndarray:
    """A random row-convention generator Q (n, n) float64: off-diagonals >= 0, rows summing to 0.

    Off-diagonal rates are Exp(1) times 10^u with u uniform in [-3, max_log10_rate] ("spread") or u = 0 ("one
    scale"); with probability 0.4 a random fraction of them is zeroed (sparse, possibly reducible chains).
    """
    n = draw(st.integers(MIN_STATES, MAX_STATES))
    seed = draw(st.integers(0, 2**32 - 1))
    spread = draw(st.booleans())
    sparse = draw(st.sampled_from([0.0, 0.0, 0.3, 0.7]))
    rng = np.random.default_rng(seed)
    rates = rng.exponential(size=(n, n))
    if spread:
        rates *= 10.0 ** rng.uniform(-3.0, max_log10_rate, size=(n, n))
    if sparse:
        rates *= rng.random((n, n)) >= sparse
    np.fill_diagonal(rates, 0.0)
    return rates - np.diag(rates.sum(axis=1))


@st.composite
def rate_matrices(draw: st.DrawFn, max_log10_rate: float = 2.0) -> ctmc.RateMatrix:
    """One of the four classes: Uniform(n), Absorbing(n - 1), BirthDeath(n, rate) or Dense(random generator)."""
    kind = draw(st.sampled_from(["uniform", "absorbing", "birth_death", "dense", "dense"]))
    n = draw(st.integers(MIN_STATES, MAX_STATES))
    if kind == "uniform":
        return ctmc.Uniform(n)
    if kind == "absorbing":
        return ctmc.Absorbing(n - 1)
    if kind == "birth_death":
        return ctmc.BirthDeath(n, draw(st.floats(1e-2, 10.0 ** min(max_log10_rate, 1.0))))
    return ctmc.Dense(torch.from_numpy(draw(generator_arrays(max_log10_rate))))


def times(max_value: float = 5.0) -> st.SearchStrategy[float]:
    """Integrated times in [0, max_value], with the end points and tiny values favoured by hypothesis."""
    return st.one_of(st.just(0.0), st.floats(1e-8, 1e-3), st.floats(0.0, max_value))


def max_exit_rate(rate_matrix: ctmc.RateMatrix) -> float:
    """max_i |Q[i, i]|, the largest exit rate (the scale of d P / dt)."""
    return float(rate_matrix.matrix().diagonal().abs().max())
