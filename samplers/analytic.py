"""The analytic ("Tweedie") reverse step of SEDD over [s, t], with the exact transition of the forward chain.

With Delta = sigma-bar(t) - sigma-bar(s) and the per-position factorisation of SEDD (Lou et al. 2024), Bayes'
rule gives

    p(x_s = y | x_t = x) = p_s(y) P(Delta)[y, x] / p_t(x),    p_s = p_t exp(-Delta Q)   (row vectors),

so with the concrete score s(x)_z = p_t(z) / p_t(x) (s(x)_x = 1):

    p(x_s = y | x_t = x) proportional to (s exp(-Delta Q))_y * P(Delta)[y, x],       (clamped at 0)

The chain computes it (`ctmc.RateMatrix.analytic_jump_probability`, `analytic_destinations`): closed forms for
the structured chains (for the absorbing chain a masked position unmasks with probability
min(1, expm1(Delta) sum_y s_y), to y proportional to s_y), a dense product for any other chain. The final
denoising step of SEDD is this step from t = eps to s = 0 (Delta = sigma-bar(eps)); x_0 is clean data, so every
position still at a state that is not clean (the mask) leaves for sure.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from samplers.jumps import Jumps
from samplers.models import ModelOutput


def analytic_jumps(
    rate_matrix: ctmc.RateMatrix, output: ModelOutput, x: Tensor, total_t: Tensor, total_s: Tensor
) -> tuple[Tensor, Jumps]:
    """(jump probability (B, L), destination rates) of the analytic step from total noise total_t to total_s.

    output: the model at (x, total_t); x: (B, L) long; total_t, total_s: (B,) float with total_s <= total_t.
    The returned Jumps carry the jump probability in place of an exit rate (only their rows are drawn from).
    """
    delta = (total_t - total_s).double()[:, None]

    def jump_probability(picked: Tensor, values: Tensor, scale: Tensor | None, spans: Tensor) -> Tensor:
        return rate_matrix.analytic_jump_probability(picked, values, spans, scale)

    def destinations(picked: Tensor, values: Tensor, scale: Tensor | None, spans: Tensor) -> Tensor:
        return rate_matrix.analytic_destinations(picked, values, spans, scale)

    probability = output.statistic(jump_probability, x, delta)
    to_data = (total_s == 0)[:, None] & (x >= rate_matrix.num_clean_states) & (probability > 0)
    probability = torch.where(to_data, 1.0, probability)
    width = rate_matrix.num_states

    def rows(selected: Tensor) -> Tensor:
        return output.row_function(destinations, x, selected, width, delta)

    return probability, Jumps(probability, rows)
