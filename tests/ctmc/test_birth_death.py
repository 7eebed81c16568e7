"""BirthDeath (closed form in the cosine basis, ctmc/birth_death.py) against `RateMatrixContract`."""

from rate_matrix_contract import RateMatrixContract

import ctmc


class TestBirthDeath(RateMatrixContract):
    def make_chain(self):
        return ctmc.BirthDeath(4, 0.7)
