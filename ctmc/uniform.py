"""The uniform rate matrix: every state jumps to a uniformly drawn state.

Normalisation (SEDD's, Lou et al. 2024): Q = (1/n) 1 1^T - I, i.e. rate 1/n from i to each j != i and exit
rate (n - 1)/n. Then P(t) = e^{-t} I + (1 - e^{-t}) (1/n) 1 1^T: with probability 1 - e^{-t} the state has
been redrawn uniformly from all n states (itself included). D3PM's one-step matrix (1 - beta) I + beta 1 1^T / n
is P(tau) with e^{-tau} = 1 - beta (see `ctmc.DiscreteTimeChain`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ctmc.noise_ratio import log_expm1
from ctmc.rate_matrix import RateMatrix
from ctmc.row_reductions import bregman_statistics, log_mixture_statistics


class Uniform(RateMatrix):
    """Q = (1/n) 1 1^T - I on n states; closed-form transitions that never form an n x n matrix."""

    def __init__(self, num_states: int) -> None:
        if not isinstance(num_states, int) or isinstance(num_states, bool) or num_states < 2:
            raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
        self.num_states = num_states

    exchangeable = True  # every clean token plays the same role
    score_entropy_checks_values = True  # its closed form reads log_score through ctmc.row_reductions

    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        n = self.num_states
        return torch.full((n, n), 1.0 / n, dtype=dtype, device=device) - torch.eye(n, dtype=dtype, device=device)

    def _transition(self, t: Tensor) -> Tensor:
        n = self.num_states
        eye = torch.eye(n, dtype=t.dtype, device=t.device)
        stay = torch.exp(-t)[..., None, None]
        move = (-torch.expm1(-t) / n)[..., None, None]
        return stay * eye + move

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        # P(t)[x, y] = (1 - e^{-t}) / n + e^{-t} [y = x]
        out = (-torch.expm1(-t) / self.num_states)[..., None].repeat_interleave(self.num_states, dim=-1)
        return out.scatter_add_(-1, x[..., None], torch.exp(-t)[..., None])

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        return self._transition_from(x, t)  # P(t) is symmetric

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        return torch.exp(-t)[..., None] * p + (-torch.expm1(-t))[..., None] * p.sum(-1, keepdim=True) / self.num_states

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        redraw = u < -torch.expm1(-t.double())
        fresh = torch.randint(0, self.num_states, x.shape, device=x.device, generator=generator)
        return torch.where(redraw, fresh, x)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        n = self.num_states
        out = torch.full((*x.shape, n), 1.0 / n, dtype=torch.float64, device=x.device)
        return out.scatter_(-1, x[..., None], -(n - 1) / n)

    def _incoming_rates(self, x: Tensor) -> Tensor:
        return self._outgoing_rates(x)  # Q is symmetric

    def _exit_rate(self, x: Tensor) -> Tensor:
        return torch.full(x.shape, (self.num_states - 1) / self.num_states, dtype=torch.float64, device=x.device)

    def _reachable(self, x0: Tensor, x_t: Tensor) -> Tensor:
        return torch.ones(x0.shape, dtype=torch.bool, device=x0.device)

    def _limit_law(self, device: torch.device) -> Tensor:
        return torch.full((self.num_states,), 1.0 / self.num_states, dtype=torch.float64, device=device)

    def _sample_limit(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        return torch.randint(0, self.num_states, shape, device=device, generator=generator)

    def _prior_kl(self, x0: Tensor, total: Tensor) -> Tensor:
        """With keep = e^{-total} and spread = (1 - keep) / n, the same for every x0:
        KL = (keep + spread) log(n (keep + spread)) + (n - 1) spread log(n spread)."""
        n = self.num_states
        keep, spread = torch.exp(-total), -torch.expm1(-total) / n
        return torch.xlogy(keep + spread, n * (keep + spread)) + (n - 1) * torch.xlogy(spread, n * spread)

    # Reverse rates: Q[y, x] = 1 / n for y != x: total rate (sum_y s_y - s_x) / n, destination proportional to s_y.
    def _reverse_exit_rate(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        own = score.gather(-1, x[..., None]).squeeze(-1).double()
        rate = (score.sum(-1, dtype=torch.float64) - own) / self.num_states
        return rate if scale is None else rate * scale.double()

    def _reverse_rates_to(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        rates = score.double() / self.num_states
        if scale is not None:
            rates = rates * scale.double()[..., None]
        return rates.scatter_(-1, x[..., None], 0.0)

    def _score_from_posterior(self, x: Tensor, probs: Tensor, total: Tensor) -> Tensor:
        """With P[x0, y] = a [x0 = y] + b (a = e^{-total}, b = (1 - a) / n; every x0 reaches x), the sum over
        x0 = y, x0 = x and the rest gives, for y != x (p normalised, c = expm1(total)):

            s_y = p_y a / b + 1 - p_x a / (a + b) = n p_y / c + 1 - n p_x / (n + c),     s_x = 1.
        """
        n = self.num_states
        growth = torch.expm1(total.double())[..., None]
        probs = probs.double()
        mass = probs.sum(-1, keepdim=True)
        probs = probs / torch.where(mass > 0, mass, 1.0)
        own = probs.gather(-1, x[..., None])
        score = n * probs / growth + (1.0 - n * own / (n + growth))
        return torch.where(mass > 0, score, 0.0).scatter(-1, x[..., None], 1.0)

    def _score_entropy(self, log_score: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """w_y = 1 / n and, with c = expm1(sigma-bar): if x_t = x0 every r_y = rho = c / (n + c); otherwise
        r_y = 1 except r_{x0} = 1 + n / c. l = (1/n) sum_{y != x_t} r_y phi(log s_y - log r_y), one pass over n."""
        n = self.num_states
        log_c = log_expm1(total)[:, None]  # log expm1(sigma-bar), (B, 1) float64
        same = x_t == x0
        # Baseline log-ratio of the ordinary states: log rho if x_t = x0, else 0 (r_y = 1).
        log_rho = log_c - torch.logaddexp(log_c, torch.full_like(log_c, math.log(n)))
        base = torch.where(same, log_rho, torch.zeros_like(log_rho)).to(log_score.dtype)
        # Ordinary states: every y except x_t (no term) and x0 when x_t != x0 (its own ratio, below).
        stats = bregman_statistics(log_score, base, torch.stack([x_t, x0], dim=-1), x0[..., None])
        ordinary = torch.exp(base) * stats.total
        # y = x0 != x_t: ratio R = 1 + n / c, log R = softplus(log n - log c).
        log_big = torch.nn.functional.softplus(math.log(n) - log_c).to(log_score.dtype)
        # Zeroed before expm1 where x_t = x0 (no special term), so that the entry at x_t (not read) cannot reach
        # the gradient: phi(0) = 0.
        zero = torch.zeros((), dtype=log_score.dtype, device=log_score.device)
        u = torch.where(same, zero, stats.gathered.squeeze(-1) - log_big)
        special = torch.exp(log_big) * (torch.expm1(u) - u)
        return (ordinary + special) / n

    def d3pm_terms(
        self, logits: Tensor, x0: Tensor, x_t: Tensor, step: Tensor, before: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Closed form, with Q_i = d I + b 1 1^T (d = 1 - beta, b = beta / n), Q-bar_{i-1} = abar I + c 1 1^T
        (c = (1 - abar) / n), p = softmax(logits). With L_y = d [y = x_i] + b, A_y = abar [y = x0] + c and
        M_y = abar p_y + c (sum_y M_y = 1):

            q(y) = L_y A_y / Z, Z = b + d A_{x_i};   p_theta(y) = L_y M_y / Z_theta, Z_theta = b + d M_{x_i};
            KL = sum_y q_y log(A_y / M_y) + log(Z_theta / Z)   (the L_y cancel).

        q_y = q_o = b c / Z except at y in {x0, x_i}, and log(A_y / M_y) = -softplus(log p_y + log(abar / c))
        for y != x0, so with S = sum_y softplus(log p_y + log(abar / c)) (one pass over the vocabulary):

            KL = -q_o S + q_o sp_x0 + q_x0 log(A_x0 / M_x0) - [x_i != x0] (q_{x_i} - q_o) sp_{x_i} + log(Z_theta / Z).

        At i = 1 (c = 0) q_o = q_{x_i} = 0 and the KL is the reconstruction -log p_x0 + log(Z_theta / Z).
        """
        n = self.num_states
        floor = -torch.expm1(-before) / n  # (1 - abar_{i-1}) / n
        positive = floor > 0
        log_floor = torch.log(torch.where(positive, floor, 1.0))
        log_weight = torch.where(positive, -before - log_floor, 0.0)  # log(abar / floor); unused where floor = 0
        stats = log_mixture_statistics(logits, log_weight.expand_as(x0), torch.stack([x0, x_t], -1))
        lse = stats.lse.double()
        log_p = stats.gathered.double() - lse[..., None]  # (B, L, 2): log p at x0 and at x_i
        log_p_x0, log_p_xt = log_p[..., 0], log_p[..., 1]
        total = stats.total.double()
        abar = torch.exp(-before)
        keep, spread = torch.exp(-step), -torch.expm1(-step) / n  # d, b
        same = x_t == x0
        a_x0 = abar + floor
        a_xt = torch.where(same, a_x0, floor)
        norm = spread + keep * a_xt
        q_other = spread * floor / norm
        q_x0 = torch.where(same, keep + spread, spread) * a_x0 / norm
        q_xt = (keep + spread) * a_xt / norm
        softplus = torch.nn.functional.softplus
        sp_x0, sp_xt = softplus(log_p_x0 + log_weight), softplus(log_p_xt + log_weight)
        has_floor = floor > 0
        log_m_x0 = torch.where(has_floor, log_floor + sp_x0, log_p_x0 - before)
        log_m_xt = torch.where(has_floor, log_floor + sp_xt, log_p_xt - before)
        log_norm_model = torch.logaddexp(torch.log(spread).expand_as(log_m_xt), torch.log(keep) + log_m_xt)
        kl = (
            q_other * (sp_x0 - total)
            + q_x0 * (torch.log(a_x0) - log_m_x0)
            - torch.where(same, 0.0, (q_xt - q_other) * sp_xt)
            + log_norm_model
            - torch.log(norm)
        )
        return kl, stats.lse - stats.gathered[..., 0]
