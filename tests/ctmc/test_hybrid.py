"""The uniform-absorbing hybrid (ctmc/hybrid.py) against `RateMatrixContract`."""

from rate_matrix_contract import RateMatrixContract

import ctmc
from ctmc.hybrid import Hybrid


class TestHybrid(RateMatrixContract):
    schedule = ctmc.LogLinear(1e-4)

    def make_chain(self):
        return Hybrid(3, uniform_rate=0.8, mask_rate=1.0)
