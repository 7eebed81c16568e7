"""The analytic ("Tweedie") reverse step of SEDD over [s, t], with the exact transition of the forward chain.

With Delta = sigma-bar(t) - sigma-bar(s) and the per-position factorisation of SEDD, Bayes' rule gives

    p(x_s = y | x_t = x) = p_s(y) P(Delta)[y, x] / p_t(x),    p_s = p_t exp(-Delta Q)   (row vectors),

so with the concrete score s(x)_z = p_t(z) / p_t(x) (s(x)_x = 1):

    p(x_s = y | x_t = x) proportional to (s exp(-Delta Q))_y * P(Delta)[y, x],       (clamped at 0)

Closed forms (never n x n):
- Absorbing, x = mask: y < V gets expm1(Delta) s_y, the mask keeps 1 - expm1(Delta) sum_y s_y, i.e. the
  position unmasks with probability min(1, expm1(Delta) sum_y s_y), to y proportional to s_y. A clean x stays.
  With an exact score this is (e^{-sigma-bar(s)} - e^{-sigma-bar(t)}) / (1 - e^{-sigma-bar(t)}).
- Uniform: (s exp(-Delta Q))_y = e^Delta s_y - expm1(Delta) S / n with S = sum_z s_z, and
  P(Delta)[y, x] = e^{-Delta} [y = x] + (1 - e^{-Delta}) / n.
- Other chains: the dense product with torch.linalg.matrix_exp(-Delta Q) (small n only).
The final denoising step of SEDD is this step from t = eps to s = 0 (Delta = sigma-bar(eps)); for the
absorbing chain every masked position then unmasks.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from samplers.jumps import Jumps, reverse_jumps
from samplers.models import ModelOutput


def analytic_jumps(
    rate_matrix: ctmc.RateMatrix, output: ModelOutput, x: Tensor, total_t: Tensor, total_s: Tensor
) -> tuple[Tensor, Jumps]:
    """(jump probability (B, L), destination rates) of the analytic step from total noise total_t to total_s.

    output: the model at (x, total_t); x: (B, L) long; total_t, total_s: (B,) float with total_s <= total_t.
    """
    delta = (total_t - total_s).double()[:, None]
    if isinstance(rate_matrix, ctmc.Absorbing):
        jumps = reverse_jumps(rate_matrix, output, x)
        to_data = (total_s == 0)[:, None]
        probability = torch.where(to_data, 1.0, (torch.expm1(delta) * jumps.exit_rate).clamp(max=1.0))
        return torch.where(jumps.exit_rate > 0, probability, 0.0), jumps
    scores = output.dense_scores(x, rate_matrix).double()
    if isinstance(rate_matrix, ctmc.Uniform):
        n = rate_matrix.num_states
        shift = (torch.expm1(delta) * scores.sum(-1) / n)[..., None]
        backward = torch.exp(delta)[..., None] * scores - shift
        column = (-torch.expm1(-delta) / n)[..., None].expand_as(backward).clone()
        column.scatter_add_(-1, x[..., None], torch.exp(-delta)[..., None].expand(*x.shape, 1))
    else:
        q = rate_matrix.matrix(device=x.device)
        backward = scores @ torch.linalg.matrix_exp(-delta[..., None] * q)  # (B, L, n) @ (B, n, n)
        column = rate_matrix.transition_to(x, delta.expand_as(x))
    probs = (backward * column).clamp_min(0.0)
    stay = probs.gather(-1, x[..., None]).squeeze(-1)
    moves = probs.scatter(-1, x[..., None], 0.0)
    move_total = moves.sum(-1)
    probability = torch.where(move_total > 0, move_total / (move_total + stay), 0.0)
    return probability, Jumps(move_total, lambda selected: moves[selected])

