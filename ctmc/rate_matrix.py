"""The rate matrix interface and the validation of generators.

Convention (see docs/conventions.md): row convention. `Q[i, j]` (i != j) is the rate of jumps from state i to
state j, `Q[i, i] = -sum_{j != i} Q[i, j]` so every row sums to zero, the transition matrix solves the forward
Kolmogorov equation P'(t) = P(t) Q with P(0) = I, hence P(t) = exp(tQ), and a distribution is a row vector
propagated as p_t = p_0 P(t). Here `t` is the *integrated* time of a homogeneous chain; a noise schedule maps
diffusion time in [0, 1] to it (`ctmc.ForwardProcess`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ctmc._checks import as_time, broadcast_time, check_distribution, check_states
from ctmc.categorical import sample_categorical


def validate_generator(matrix: Tensor, name: str = "matrix", atol: float | None = None) -> Tensor:
    """Check that `matrix` is a valid row-convention generator and return it.

    Rules: a square 2-d floating tensor, finite, off-diagonal entries >= 0, every row summing to 0 within
    `atol` (default: 1e-8 (float64) or 1e-5 (float32) times max(1, max |Q|) times n).
    """
    if not isinstance(matrix, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(matrix).__name__}")
    if not matrix.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {matrix.dtype}; use {name}.double()")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square 2-d tensor (n, n), got shape {tuple(matrix.shape)}")
    n = matrix.shape[0]
    if n < 2:
        raise ValueError(f"{name} must have at least 2 states, got {n}")
    if not bool(torch.isfinite(matrix).all()):
        i, j = torch.nonzero(~torch.isfinite(matrix))[0].tolist()
        raise ValueError(f"{name} must be finite, but {name}[{i}, {j}] = {matrix[i, j].item()}")
    off = matrix.masked_fill(torch.eye(n, dtype=torch.bool, device=matrix.device), 0.0)
    if bool((off < 0).any()):
        i, j = torch.nonzero(off < 0)[0].tolist()
        raise ValueError(
            f"{name} off-diagonal entries are jump rates and must be >= 0, but {name}[{i}, {j}] = "
            f"{matrix[i, j].item():.6g}"
        )
    if atol is None:
        base = 1e-8 if matrix.dtype == torch.float64 else 1e-5
        atol = base * max(1.0, matrix.abs().max().item()) * n
    sums = matrix.sum(dim=1)
    if bool((sums.abs() > atol).any()):
        i = int(torch.argmax(sums.abs()))
        col_ok = bool((matrix.sum(dim=0).abs() <= atol).all())
        hint = (
            " Its columns sum to zero: it follows the column convention (dp/dt = Q p); "
            "convert it with ctmc.from_column_convention."
            if col_ok
            else " Set the diagonal to minus the sum of the row's off-diagonal rates."
        )
        raise ValueError(
            f"{name} rows must sum to 0 (row convention: Q[i, j] is the rate from i to j), but row {i} "
            f"sums to {sums[i].item():.6g}.{hint}"
        )
    return matrix


def from_column_convention(matrix: Tensor) -> Tensor:
    """Convert a column-convention generator (dp/dt = Q p, columns sum to 0, Q[j, i] = rate i -> j).

    Returns the row-convention generator Q^T (rows sum to 0, Q[i, j] = rate i -> j), validated.
    Works on (..., n, n) by transposing the last two dimensions; validation is applied to 2-d input.
    """
    result = matrix.transpose(-1, -2)
    if result.dim() == 2:
        if isinstance(matrix, Tensor) and matrix.is_floating_point() and _rows_sum_to_zero(matrix):
            if not _rows_sum_to_zero(result):
                raise ValueError(
                    "matrix already follows the row convention (its rows sum to 0, its columns do not): "
                    "use it as it is, without from_column_convention"
                )
        validate_generator(result, name="matrix (after transposing from the column convention)")
    return result


def _rows_sum_to_zero(matrix: Tensor) -> bool:
    base = 1e-8 if matrix.dtype == torch.float64 else 1e-5
    atol = base * max(1.0, matrix.abs().max().item()) * matrix.shape[-1]
    return bool((matrix.sum(dim=-1).abs() <= atol).all())


def to_column_convention(matrix: Tensor) -> Tensor:
    """Convert a row-convention generator to the column convention (the transpose): dp/dt = Q^T p."""
    if matrix.dim() == 2:
        validate_generator(matrix)
    return matrix.transpose(-1, -2)


class RateMatrix(ABC):
    """A time-homogeneous generator Q on `num_states` states, and the transition P(t) = exp(tQ).

    Every method is batched: `t` may have any leading shape, and `x` any shape that `t` broadcasts to.
    Subclasses with structure (Uniform, Absorbing) override the row/column methods with closed forms
    that never form an n x n matrix; the defaults here go through the dense `transition`.
    """

    num_states: int

    @property
    def num_clean_states(self) -> int:
        """How many values a clean (data) token may take: every state, except an absorbing mask."""
        return self.num_states

    @abstractmethod
    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """The generator Q as a dense (n, n) tensor, row convention."""

    @abstractmethod
    def _transition(self, t: Tensor) -> Tensor:
        """P(t) for a checked floating t of any shape; returns t.shape + (n, n) in t's dtype."""

    def transition(self, t: Tensor | float) -> Tensor:
        """P(t) = exp(tQ), the solution of P'(t) = P(t) Q = Q P(t) with P(0) = I.

        t: (...) float >= 0. Returns (..., n, n) in the dtype of t; row i is the law of x_t given x_0 = i.
        """
        return self._transition(as_time(t))

    def transition_from(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Rows of P(t) = exp(tQ) for the states in x: P(t)[x, :].

        x: (...) long in [0, n); t: broadcastable to x.shape. Returns x.shape + (n,) in t's dtype.
        """
        x = check_states(x, self.num_states)
        t = broadcast_time(x, as_time(t))
        return self._transition_from(x, t)

    def transition_to(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Columns of P(t) for the states in x: P(t)[:, x], i.e. entry y is P(x_t = x | x_0 = y).

        x: (...) long in [0, n); t: broadcastable to x.shape. Returns x.shape + (n,) in t's dtype.
        """
        x = check_states(x, self.num_states)
        t = broadcast_time(x, as_time(t))
        return self._transition_to(x, t)

    def propagate(self, p: Tensor, t: Tensor | float) -> Tensor:
        """Push a distribution forward: p P(t) (Kolmogorov forward equation for row vectors).

        p: (..., n) float; t: broadcastable to p.shape[:-1]. Returns (..., n) in the promoted dtype.
        """
        p = check_distribution(p, self.num_states)
        t = as_time(t)
        dtype = torch.promote_types(p.dtype, t.dtype)
        p, t = p.to(dtype), t.to(dtype)
        try:
            t = t.to(p.device).expand(p.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"t of shape {tuple(t.shape)} does not broadcast to p.shape[:-1] = {tuple(p.shape[:-1])}"
            ) from None
        return self._propagate(p, t)

    def sample(self, x: Tensor, t: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_t ~ P(t)[x, :] independently for every entry of x (categorical draw in float64).

        x: (...) long in [0, n); t: broadcastable to x.shape. Returns (...) long.
        """
        x = check_states(x, self.num_states)
        t = broadcast_time(x, as_time(t))
        return self._sample(x, t, generator)

    def outgoing_rates(self, x: Tensor) -> Tensor:
        """Rows of Q for the states in x: Q[x, :] (rates out of x; entry x is minus the exit rate).

        x: (...) long. Returns x.shape + (n,) float64.
        """
        return self._outgoing_rates(check_states(x, self.num_states))

    def incoming_rates(self, x: Tensor) -> Tensor:
        """Columns of Q for the states in x: Q[:, x] (entry y is the rate of jumps y -> x).

        x: (...) long. Returns x.shape + (n,) float64. This is the weight Q(y, x_t) of score entropy and the
        factor of the reverse rate R(x -> y) = Q(y, x) p_t(y) / p_t(x).
        """
        return self._incoming_rates(check_states(x, self.num_states))

    # Dense defaults, overridden by structured subclasses.
    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        index = x[..., None, None].expand(*x.shape, 1, self.num_states)
        return self._transition(t).gather(-2, index).squeeze(-2)

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        index = x[..., None, None].expand(*x.shape, self.num_states, 1)
        return self._transition(t).gather(-1, index).squeeze(-1)

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        transition = self._transition(t)
        return (p[..., None, :].to(transition.dtype) @ transition).squeeze(-2)

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        return sample_categorical(self._transition_from(x, t), generator, check=False)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        return self.matrix(device=x.device)[x]

    def _incoming_rates(self, x: Tensor) -> Tensor:
        return self.matrix(device=x.device).T[x]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_states={self.num_states})"
