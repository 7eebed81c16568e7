"""Uniform, Absorbing and Dense (a non-symmetric generator) against `RateMatrixContract`."""

import torch
from rate_matrix_contract import RateMatrixContract

import ctmc


class TestUniform(RateMatrixContract):
    def make_chain(self):
        return ctmc.Uniform(4)


class TestAbsorbing(RateMatrixContract):
    schedule = ctmc.LogLinear(1e-4)

    def make_chain(self):
        return ctmc.Absorbing(3)


class TestDense(RateMatrixContract):
    """An irreducible, non-symmetric generator: its limit law is not uniform."""

    def make_chain(self):
        rows = [[0.0, 1.0, 0.2, 0.0], [0.3, 0.0, 0.9, 0.1], [0.0, 0.5, 0.0, 1.4], [0.8, 0.0, 0.2, 0.0]]
        rates = torch.tensor(rows, dtype=torch.float64)
        return ctmc.Dense(rates - torch.diag(rates.sum(1)))
