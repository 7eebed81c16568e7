"""Denoising score entropy (SEDD, Lou et al. 2024; seed 003), a negative ELBO for concrete-score networks.

For one position with noisy state x = x_t, clean state x0 and total noise sigma-bar = total(t):

    l(s) = sum_{y != x} w_y [ s_y - r_y log s_y + K(r_y) ],   K(a) = a (log a - 1),

with the exact ratio r_y = p_{t|0}(y | x0) / p_{t|0}(x | x0) and the forward rate into x, w_y = sigma(t) Q[y, x]
(row convention: `incoming_rates(x)` times sigma(t)). Every term equals w_y r_y phi(log s_y - log r_y) with
phi(u) = e^u - u - 1 >= 0, so l >= 0 with equality iff s_y = r_y; a term with r_y = 0 is w_y s_y. The loss is
the sum over positions, and over t ~ U(0, 1] its expectation is

    int_0^1 E_{x_t | x0} sum_i l_i dt  >=  -log p_theta(x0) - KL(p_{1|0}(. | x0) || prior),

the path-space bound of SEDD (their Theorem 3.6). Closed forms:
- Absorbing: only masked positions contribute (w_y = 1 for every token y), r_y = [y = x0] / expm1(sigma-bar),
  so l = sigma r [ expm1(logsumexp_{y<V} log s_y - log r) - (log s_{x0} - log r) ].
- Uniform (Q = 11^T/n - I, P(t) = e^{-t} I + (1 - e^{-t}) 11^T / n): w_y = sigma / n, and with
  c = expm1(sigma-bar): if x = x0 all r_y = rho = c / (n + c); otherwise r_y = 1 except r_{x0} = 1 + n / c.
- Any other `RateMatrix`: r from `transition_from(x0, sigma-bar)` and w from `incoming_rates(x)` (forms
  B x L x n x n transitions for `Dense`; for small n).
The Absorbing and Uniform forms need only per-position reductions of `output` (a logsumexp, or a sum of phi),
computed by `losses.row_reductions` so that forward + backward hold one (B, L, n) tensor beyond the output.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import ctmc
from ctmc.noise_ratio import log_expm1, log_mask_ratio
from losses._validation import check_finite_loss
from losses.base import DiffusionLoss
from losses.row_reductions import bregman_statistics, logsumexp_statistics


def bregman_phi(u: Tensor) -> Tensor:
    """phi(u) = e^u - u - 1 >= 0 (zero only at u = 0): s - r log s + K(r) = r phi(log s - log r)."""
    return torch.expm1(u) - u


class ScoreEntropy(DiffusionLoss):
    """SEDD's denoising score entropy; `output` is (B, L, n) log concrete scores log s_theta(x_t, t)."""

    output_kind = "log_score"
    time_independent = False

    def __init__(self, process: ctmc.ForwardProcess) -> None:
        super().__init__(process)

    def _loss(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        t64 = t.double()
        total = self.process.total(t64)
        sigma = self.process.sigma(t64)
        rate_matrix = self.process.rate_matrix
        if isinstance(rate_matrix, ctmc.Absorbing):
            per_position = self._absorbing(output, x0, x_t, total)
        elif isinstance(rate_matrix, ctmc.Uniform):
            per_position = self._uniform(output, x0, x_t, total)
        else:
            per_position = self._generic(output, x0, x_t, total)
        loss = sigma.to(output.dtype) * per_position.sum(-1)
        return check_finite_loss(loss, "output gives score 0 (log-score -inf) to a state of positive ratio")

    def _absorbing(self, output: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """(B, L): r [expm1(lse_y log s_y - log r) - (log s_x0 - log r)] at masked positions, else 0."""
        vocab = self.process.rate_matrix.vocab_size
        log_r = log_mask_ratio(total).to(output.dtype)[:, None]
        masked = x_t == vocab
        zero = torch.zeros((), dtype=output.dtype, device=output.device)
        stats = logsumexp_statistics(output, x0[..., None], width=vocab)
        # Unmasked positions are zeroed before expm1 so that garbage there cannot overflow into the gradient.
        spread = torch.where(masked, stats.lse - log_r, zero)
        target = torch.where(masked, stats.gathered.squeeze(-1) - log_r, zero)
        return torch.exp(log_r) * (torch.expm1(spread) - target)

    def _uniform(self, output: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """(B, L): (1/n) sum_{y != x_t} r_y phi(log s_y - log r_y) with the closed-form ratios above."""
        n = self.num_states
        log_c = log_expm1(total)[:, None]  # log expm1(sigma-bar), (B, 1) float64
        same = x_t == x0
        # Baseline log-ratio of the ordinary states: log rho if x_t = x0, else 0 (r_y = 1).
        log_rho = log_c - torch.logaddexp(log_c, torch.full_like(log_c, math.log(n)))
        base = torch.where(same, log_rho, torch.zeros_like(log_rho)).to(output.dtype)
        # Ordinary states: every y except x_t (no term) and x0 when x_t != x0 (its own ratio, below).
        stats = bregman_statistics(output, base, torch.stack([x_t, x0], dim=-1), x0[..., None])
        ordinary = torch.exp(base) * stats.total
        # y = x0 != x_t: ratio R = 1 + n / c, log R = softplus(log n - log c).
        log_big = torch.nn.functional.softplus(math.log(n) - log_c).to(output.dtype)
        special = torch.exp(log_big) * bregman_phi(stats.gathered.squeeze(-1) - log_big)
        special = torch.where(same, torch.zeros((), dtype=output.dtype, device=output.device), special)
        return (ordinary + special) / n

    def _generic(self, output: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """(B, L): sum_y w_y [r_y phi(log s_y - log r_y) if r_y > 0 else s_y], r and w from the RateMatrix."""
        rate_matrix = self.process.rate_matrix
        dtype = torch.promote_types(output.dtype, torch.float64)
        rows = rate_matrix.transition_from(x0, total[:, None]).to(dtype)  # p(. | x0), (B, L, n)
        here = rows.gather(-1, x_t[..., None])
        if bool((here <= 0).any()):
            raise ValueError("x_t has probability 0 given x0 under the forward process; sample it with process.sample")
        ratio = rows / here
        weight = rate_matrix.incoming_rates(x_t).to(dtype).scatter(-1, x_t[..., None], 0.0)
        positive = ratio > 0
        log_ratio = torch.where(positive, torch.log(torch.where(positive, ratio, 1.0)), 0.0)
        log_s = output.to(dtype)
        terms = torch.where(positive, ratio * bregman_phi(log_s - log_ratio), torch.exp(log_s))
        terms = torch.where(weight > 0, weight * terms, 0.0)
        return terms.sum(-1).to(output.dtype)
