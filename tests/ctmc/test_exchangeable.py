"""RateMatrix.exchangeable against its definition: P Q P^T = Q for every permutation P of the
clean states (the other states fixed), checked by enumerating all permutations of a small chain."""

from __future__ import annotations

import itertools

import pytest
import torch

import ctmc
from ctmc.hybrid import Hybrid


def commutes_with_every_clean_permutation(rate_matrix: ctmc.RateMatrix) -> bool:
    q = rate_matrix.matrix()
    clean, n = rate_matrix.num_clean_states, rate_matrix.num_states
    for permutation in itertools.permutations(range(clean)):
        index = torch.tensor([*permutation, *range(clean, n)])
        if not torch.allclose(q[index][:, index], q, rtol=0, atol=1e-12):
            return False
    return True


@pytest.mark.parametrize(
    "rate_matrix",
    [ctmc.Absorbing(4), ctmc.Uniform(4), ctmc.BirthDeath(4), Hybrid(4, 0.5, 2.0)],
    ids=["absorbing", "uniform", "birth-death", "hybrid"],
)
def test_the_property_says_whether_q_commutes_with_clean_permutations(rate_matrix):
    assert rate_matrix.exchangeable == commutes_with_every_clean_permutation(rate_matrix)
