"""Denoising score entropy (SEDD, Lou et al. 2024), a negative ELBO for concrete-score networks.

For one position with noisy state x = x_t, clean state x0 and total noise sigma-bar = total(t):

    l(s) = sum_{y != x} w_y [ s_y - r_y log s_y + K(r_y) ],   K(a) = a (log a - 1),

with the exact ratio r_y = p_{t|0}(y | x0) / p_{t|0}(x | x0) and the forward rate into x, w_y = sigma(t) Q[y, x]
(row convention: `incoming_rates(x)` times sigma(t)). Every term equals w_y r_y phi(log s_y - log r_y) with
phi(u) = e^u - u - 1 >= 0, so l >= 0 with equality iff s_y = r_y; a term with r_y = 0 is w_y s_y. The loss is
the sum over positions, and over t ~ U(0, 1] its expectation is

    int_0^1 E_{x_t | x0} sum_i l_i dt  >=  -log p_theta(x0) - KL(p_{1|0}(. | x0) || prior),

the path-space bound of SEDD (their Theorem 3.6). The per-position sum is the chain's own
`RateMatrix.score_entropy`: closed forms for the structured chains (Absorbing, Uniform, Hybrid: one
per-position reduction of `output` in `ctmc.row_reductions`, so forward + backward hold one (B, L, n) tensor
beyond the output), and a dense default from `transition_from` and `incoming_rates` for any other chain.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from losses._validation import check_finite_loss
from losses.base import DiffusionLoss


def bregman_phi(u: Tensor) -> Tensor:
    """phi(u) = e^u - u - 1 >= 0 (zero only at u = 0): s - r log s + K(r) = r phi(log s - log r)."""
    return torch.expm1(u) - u


class ScoreEntropy(DiffusionLoss):
    """SEDD's denoising score entropy; `output` is (B, L, n) log concrete scores log s_theta(x_t, t)."""

    output_kind = "log_score"
    time_independent = False

    def __init__(self, process: ctmc.ForwardProcess) -> None:
        super().__init__(process)

    def output_positions(self, x_t: Tensor) -> Tensor | None:
        """x_t == mask on the absorbing chain (no rate leads into a clean token, so an unmasked position's term
        is exactly 0); None (every position) on any other chain. x_t: (B, L) long."""
        rate_matrix = self.process.rate_matrix
        return x_t == rate_matrix.mask_index if rate_matrix.score_factorises else None

    def _checks_output_values(self) -> bool:
        """The chain's closed form refuses NaN / +inf itself (`RateMatrix.score_entropy_checks_values`)."""
        return self.process.rate_matrix.score_entropy_checks_values

    def _loss(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        t64 = t.double()
        total = self.process.total(t64)
        sigma = self.process.sigma(t64)
        per_position = self.process.rate_matrix.score_entropy(output, x0, x_t, total)
        loss = sigma.to(output.dtype) * per_position.sum(-1)
        return check_finite_loss(loss, "output gives score 0 (log-score -inf) to a state of positive ratio")
