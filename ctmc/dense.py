"""Any generator given as a dense matrix.

`Dense` caches one eigendecomposition Q = V diag(lambda) V^{-1} (in float64) and evaluates
P(t) = V diag(e^{lambda t}) V^{-1}; a symmetric Q uses the orthogonal `eigh`. Where V is ill-conditioned
(a defective or nearly defective Q) it falls back to `torch.linalg.matrix_exp(tQ)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.rate_matrix import RateMatrix, validate_generator

# Largest condition number of the eigenvector matrix for which the eigendecomposition is used: rounding in
# V^{-1} is amplified by about cond(V), so 1e4 keeps float64 results within ~1e-12 of the exact exponential.
MAX_EIGENVECTOR_CONDITION = 1e4


class Dense(RateMatrix):
    """A generator Q given as an (n, n) tensor or array, validated (row convention)."""

    def __init__(self, matrix: Tensor, atol: float | None = None) -> None:
        if not isinstance(matrix, Tensor) and hasattr(matrix, "__array__"):  # a NumPy array, without importing NumPy
            matrix = torch.as_tensor(matrix)
        validate_generator(matrix, name="matrix", atol=atol)
        self._matrix = matrix.detach().to(torch.float64)
        self.num_states = matrix.shape[0]
        self._eigen = self._diagonalise(self._matrix)

    @staticmethod
    def _diagonalise(q: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """Return (eigenvalues, V, V^{-1}) (complex128 or float64) or None where V is ill-conditioned."""
        if torch.allclose(q, q.T, rtol=0.0, atol=1e-14 * max(1.0, q.abs().max().item())):
            values, vectors = torch.linalg.eigh(q)
            return values, vectors, vectors.T
        values, vectors = torch.linalg.eig(q)
        if not bool(torch.isfinite(torch.view_as_real(vectors)).all()):
            return None
        if torch.linalg.cond(vectors).item() > MAX_EIGENVECTOR_CONDITION:
            return None
        return values, vectors, torch.linalg.inv(vectors)

    @property
    def is_diagonalised(self) -> bool:
        """Whether transitions use the cached eigendecomposition (False: matrix_exp fallback)."""
        return self._eigen is not None

    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        return self._matrix.to(dtype=dtype, device=device)

    def _exp_factors(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        values, vectors, inverse = (a.to(t.device) for a in self._eigen)
        growth = torch.exp(values * t.to(torch.float64)[..., None])
        return growth, vectors, inverse

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        """p exp(tQ), also for negative t (the analytic step's backward factor), where entries may be negative."""
        q = self._matrix.to(p.device)
        if self._eigen is None:
            exp = torch.linalg.matrix_exp(t.to(torch.float64)[..., None, None] * q)
        else:
            growth, vectors, inverse = self._exp_factors(t)
            exp = (vectors * growth[..., None, :]) @ inverse
            exp = exp.real if exp.is_complex() else exp
        return (p[..., None, :].to(torch.float64) @ exp).squeeze(-2).to(p.dtype)

    @staticmethod
    def _finish(result: Tensor, dtype: torch.dtype) -> Tensor:
        # Drop the imaginary rounding of complex eigenpairs and rounding-level negative probabilities.
        if result.is_complex():
            result = result.real
        return result.clamp_min(0.0).to(dtype)

    def _transition(self, t: Tensor) -> Tensor:
        if self._eigen is None:
            q = self._matrix.to(t.device)
            return torch.linalg.matrix_exp(t.to(torch.float64)[..., None, None] * q).clamp_min(0.0).to(t.dtype)
        growth, vectors, inverse = self._exp_factors(t)
        return self._finish((vectors * growth[..., None, :]) @ inverse, t.dtype)

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        if self._eigen is None:
            return super()._transition_from(x, t)
        growth, vectors, inverse = self._exp_factors(t)
        return self._finish((vectors[x] * growth) @ inverse, t.dtype)

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        if self._eigen is None:
            return super()._transition_to(x, t)
        growth, vectors, inverse = self._exp_factors(t)
        return self._finish((inverse.T[x] * growth) @ vectors.T, t.dtype)
