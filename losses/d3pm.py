"""D3PM's discrete-time loss (Austin et al. 2021; seeds 000, 004): the variational bound plus a hybrid term.

With T steps, x_i ~ Cat(x0 Q-bar_i) and an x0-prediction p~_theta(x0 | x_i) (softmax of the logits),

    -log p_theta(x0) <= KL(q(x_T | x0) || prior) + sum_{i=2}^T KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i))
                        - log p_theta(x0 | x_1),

    p_theta(x_{i-1} | x_i) proportional to sum_{x~0} q(x_{i-1}, x_i | x~0) p~_theta(x~0 | x_i)   (their eq. 5),

both posteriors as in `ctmc.DiscreteTimeChain.posterior` (ids for q, probabilities for p_theta). At i = 1,
q(x_0 | x_1, x0) is the point mass at x0, so the KL term is the reconstruction -log p_theta(x0 | x_1): one
formula covers every step. With i ~ U{1..T}, `forward` returns

    T * KL_i + KL(q(x_T | x0) || prior) + hybrid_weight * (-log p~_theta(x0 | x_i)),

whose expectation is the negative ELBO plus hybrid_weight times D3PM's auxiliary cross-entropy. For the
Absorbing and Uniform chains the KL has a closed form in a few per-position numbers of the logits (logsumexp,
the logits at x0, x_i or the mask, and for Uniform one sum over the vocabulary), computed with the lean
reductions of `losses.row_reductions` and then in float64 per position: no (B, L, n) posterior is formed.
Other chains take `generic_kl_terms`, the two posteriors in float64, where zero-mass states contribute
0 * log 0 = 0 exactly (no epsilon is added to logits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import ctmc
from losses._validation import check_finite_loss, check_output, check_pair
from losses.row_reductions import log_mixture_statistics, logsumexp_statistics


class D3PMLoss(nn.Module):
    """The D3PM hybrid loss for a `ctmc.DiscreteTimeChain`; `output` is (B, L, n) logits of x0."""

    output_kind = "x0_logits"
    time_independent = False

    def __init__(self, chain: ctmc.DiscreteTimeChain, hybrid_weight: float = 0.01) -> None:
        super().__init__()
        if not isinstance(chain, ctmc.DiscreteTimeChain):
            raise TypeError(f"chain must be a ctmc.DiscreteTimeChain, got {type(chain).__name__}")
        if isinstance(hybrid_weight, bool) or not isinstance(hybrid_weight, (int, float)) or hybrid_weight < 0:
            raise ValueError(f"hybrid_weight must be a number >= 0 (D3PM uses 0.01), got {hybrid_weight!r}")
        self.chain = chain
        self.hybrid_weight = float(hybrid_weight)
        self.register_buffer("_prior_kl", self._prior_table(), persistent=False)

    @property
    def num_states(self) -> int:
        return self.chain.num_states

    def _clean_states(self) -> int:
        """The number of values a clean token may take (all states except an absorbing mask)."""
        return self.chain.rate_matrix.num_clean_states

    def _prior_table(self) -> Tensor:
        """KL(q(x_T | x0 = a) || prior) for every clean a: (clean states,) float64.

        The prior is the all-mask point mass (Absorbing) or the uniform distribution (Uniform, and any other
        chain, for which the table is formed densely). Uniform in closed form, the same for every a: with
        q(x_T | a) = keep [y = a] + spread, spread = (1 - keep) / n, keep = abar_T,
            KL = (keep + spread) log(n (keep + spread)) + (n - 1) spread log(n spread).
        """
        rate_matrix = self.chain.rate_matrix
        total = self.chain._cumulative_times[-1].clamp_max(1e4)
        clean = self._clean_states()
        if isinstance(rate_matrix, ctmc.Absorbing):
            kept = torch.exp(-total)
            if kept > 0:
                raise ValueError(
                    f"the chain keeps a token unmasked at step T with probability {kept.item():.3g}, so the "
                    "all-mask prior has infinite KL; end the betas with beta_T = 1 "
                    "(DiscreteTimeChain.linear_mutual_information does)"
                )
            return torch.zeros(clean, dtype=torch.float64)
        n = rate_matrix.num_states
        if isinstance(rate_matrix, ctmc.Uniform):
            keep, spread = torch.exp(-total), -torch.expm1(-total) / n
            kl = torch.xlogy(keep + spread, n * (keep + spread)) + (n - 1) * torch.xlogy(spread, n * spread)
            return kl.expand(clean).clone()
        states = torch.arange(clean)
        rows = rate_matrix.transition_from(states, total.expand(clean))
        return torch.xlogy(rows, rows * n).sum(-1)

    def sample_steps(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Tensor:
        """Draw (B,) long steps i ~ U{1, ..., T}; antithetic=True stratifies them ((u + b) / B covers 1..T)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if antithetic:
            u = (torch.rand((), dtype=torch.float64, generator=generator) + torch.arange(batch_size)) / batch_size
        else:
            u = torch.rand(batch_size, dtype=torch.float64, generator=generator)
        steps = (u * self.chain.num_steps).long().clamp(max=self.chain.num_steps - 1) + 1
        return steps.to(device)

    def sample_time(self, batch_size: int, device=None, generator=None, antithetic: bool = False) -> Tensor:
        """The shared interface's times: i / T in (0, 1] for i from `sample_steps`."""
        steps = self.sample_steps(batch_size, device, generator, antithetic)
        return steps.float() / self.chain.num_steps

    def kl_terms(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """Per-position KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i)): (B, L) float64 (>= 0, 0 iff equal).

        output: (B, L, n) logits; x0, x_t: (B, L) long; i: (B,) long in [1, T]. Closed forms for the Absorbing
        and Uniform chains (no (B, L, n) posterior), `generic_kl_terms` for any other chain.
        """
        return self._kl_and_cross_entropy(output, x0, x_t, i)[0]

    def generic_kl_terms(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """The same KL from the two posteriors of `DiscreteTimeChain.posterior` in float64, for any chain.

        Forms three (B, L, n) float64 tensors; the reference for the closed forms and the path for small n.
        """
        true_posterior = self.chain.posterior(x_t, x0, i[:, None])
        predicted = torch.softmax(output.double(), dim=-1)
        model_posterior = self.chain.posterior(x_t, predicted, i[:, None])
        support = true_posterior > 0
        log_model = torch.log(torch.where(support, model_posterior, 1.0))
        log_true = torch.log(torch.where(support, true_posterior, 1.0))
        return torch.where(support, true_posterior * (log_true - log_model), 0.0).sum(-1)

    def _step_coefficients(self, i: Tensor) -> tuple[Tensor, Tensor]:
        """(tau_i, tau-bar_{i-1}): the integrated times of step i and of steps 1..i-1, (B, 1) float64, so that
        1 - beta_i = e^{-tau_i} and abar_{i-1} = e^{-tau-bar_{i-1}}.

        Times as `DiscreteTimeChain` uses them (an infinite time, beta = 1, is capped where e^{-t} is 0).
        """
        device = i.device
        step = self.chain._step_times.to(device)[i].clamp_max(1e4)[:, None]
        before = self.chain._cumulative_times.to(device)[i - 1].clamp_max(1e4)[:, None]
        return step, before

    def _kl_and_cross_entropy(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> tuple[Tensor, Tensor]:
        """(KL (B, L) float64, -log p~_theta(x0 | x_i) (B, L) in output's dtype)."""
        rate_matrix = self.chain.rate_matrix
        if isinstance(rate_matrix, ctmc.Absorbing):
            stats = logsumexp_statistics(output, torch.stack([x0, torch.full_like(x0, rate_matrix.mask_index)], -1))
            kl = self._absorbing_kl(stats.lse, stats.gathered, x0, x_t, i)
        elif isinstance(rate_matrix, ctmc.Uniform):
            step, before = self._step_coefficients(i)
            floor = -torch.expm1(-before) / self.num_states  # (1 - abar_{i-1}) / n
            positive = floor > 0
            log_floor = torch.log(torch.where(positive, floor, 1.0))
            log_weight = torch.where(positive, -before - log_floor, 0.0)  # log(abar / floor); unused where floor = 0
            index = torch.stack([x0, x_t], -1)
            stats = log_mixture_statistics(output, log_weight.expand_as(x0), index)
            kl = self._uniform_kl(stats, x0, x_t, step, before, log_floor, log_weight)
        else:
            stats = logsumexp_statistics(output, x0[..., None])
            kl = self.generic_kl_terms(output, x0, x_t, i)
        return kl, stats.lse - stats.gathered[..., 0]

    def _absorbing_kl(self, lse: Tensor, gathered: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """Absorbing chain, Q_i = (1 - beta) I + beta 1 e_M^T, abar = abar_{i-1}, p = softmax(output).

        Unmasked x_i = x0: both posteriors are the point mass at x0, KL = 0. Masked x_i = M:
            q(y) = [beta abar [y = x0], (1 - abar) at M] / Z,  Z = beta abar + 1 - abar,
            p_theta(y) = [beta abar p_y (y < V), abar p_M + 1 - abar at M] / Z_theta,
            Z_theta = Z + (1 - beta) abar p_M, so
            KL = (beta abar / Z) (-log p_x0) + log1p((1 - beta) abar p_M / Z)
                 - ((1 - abar) / Z) log1p(abar p_M / (1 - abar)).
        An unmasked x_i != x0 (or at a step where nothing survives) cannot be reached: NaN, which forward rejects.
        """
        step, before = self._step_coefficients(i)
        log_p = gathered.double() - lse.double()[..., None]  # (B, L, 2): log p at x0 and at the mask
        log_p_x0, log_p_mask = log_p[..., 0], log_p[..., 1]
        abar, masked_before = torch.exp(-before), -torch.expm1(-before)  # abar_{i-1}, 1 - abar_{i-1}
        beta, keep = -torch.expm1(-step), torch.exp(-step)
        norm = beta * abar + masked_before
        reconstruct = beta * abar / norm
        cross = torch.where(reconstruct > 0, reconstruct * -log_p_x0, 0.0)
        log_abar_p_mask = -before + log_p_mask
        # log(keep abar p_M / Z); keep = 0 (beta = 1) gives -inf and a zero term.
        mask_model = torch.nn.functional.softplus(torch.log(keep) + log_abar_p_mask - torch.log(norm))
        has_mask_mass = masked_before > 0
        log_masked_before = torch.log(torch.where(has_mask_mass, masked_before, 1.0))
        mask_true = torch.where(
            has_mask_mass,
            (masked_before / norm) * torch.nn.functional.softplus(log_abar_p_mask - log_masked_before),
            0.0,
        )
        kl_masked = cross + mask_model - mask_true
        reachable = (x_t == x0) & (abar * keep > 0)
        unmasked = torch.where(reachable, 0.0, float("nan"))
        return torch.where(x_t == self.chain.rate_matrix.mask_index, kl_masked, unmasked)

    def _uniform_kl(self, stats, x0, x_t, step, before, log_floor, log_weight) -> Tensor:
        """Uniform chain, Q_i = d I + b 1 1^T (d = 1 - beta, b = beta / n), Q-bar_{i-1} = abar I + c 1 1^T
        (c = (1 - abar) / n), p = softmax(output). With L_y = d [y = x_i] + b, A_y = abar [y = x0] + c and
        M_y = abar p_y + c (sum_y M_y = 1):

            q(y) = L_y A_y / Z, Z = b + d A_{x_i};   p_theta(y) = L_y M_y / Z_theta, Z_theta = b + d M_{x_i};
            KL = sum_y q_y log(A_y / M_y) + log(Z_theta / Z)   (the L_y cancel).

        q_y = q_o = b c / Z except at y in {x0, x_i}, and log(A_y / M_y) = -softplus(log p_y + log(abar / c))
        for y != x0, so with S = sum_y softplus(log p_y + log(abar / c)) (one pass over the vocabulary):

            KL = -q_o S + q_o sp_x0 + q_x0 log(A_x0 / M_x0) - [x_i != x0] (q_{x_i} - q_o) sp_{x_i} + log(Z_theta / Z).

        At i = 1 (c = 0) q_o = q_{x_i} = 0 and the KL is the reconstruction -log p_x0 + log(Z_theta / Z).
        """
        n = self.num_states
        lse = stats.lse.double()
        log_p = stats.gathered.double() - lse[..., None]  # (B, L, 2): log p at x0 and at x_i
        log_p_x0, log_p_xt = log_p[..., 0], log_p[..., 1]
        total = stats.total.double()
        abar, floor = torch.exp(-before), -torch.expm1(-before) / n
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
        log_m_xt = torch.where(has_floor, log_floor + softplus(log_p_xt + log_weight), log_p_xt - before)
        log_norm_model = torch.logaddexp(torch.log(spread).expand_as(log_m_xt), torch.log(keep) + log_m_xt)
        kl = (
            q_other * (sp_x0 - total)
            + q_x0 * (torch.log(a_x0) - log_m_x0)
            - torch.where(same, 0.0, (q_xt - q_other) * sp_xt)
            + log_norm_model
            - torch.log(norm)
        )
        return kl

    def forward(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """T KL_i + prior KL + hybrid_weight * CE, summed over positions. output: (B, L, n) logits;
        x0: (B, L) clean ids; x_t: (B, L) ids of x_i; i: (B,) long steps in [1, T]. Returns (B,) in output's dtype.
        """
        x0, x_t = check_pair(x0, x_t, self._clean_states(), self.num_states)
        check_output(output, x0.shape, self.num_states, self.output_kind)
        if not isinstance(i, Tensor) or i.is_floating_point() or i.dtype == torch.bool or i.shape != x0.shape[:1]:
            raise TypeError(f"i must be a (B,) = ({x0.shape[0]},) long tensor of steps, got {getattr(i, 'dtype', i)}")
        if bool((i < 1).any()) or bool((i > self.chain.num_steps).any()):
            raise ValueError(f"i must lie in [1, {self.chain.num_steps}], got {i.min().item()}..{i.max().item()}")
        device = output.device
        x0, x_t, i = x0.to(device), x_t.to(device), i.to(device)
        kl, cross_entropy = self._kl_and_cross_entropy(output, x0, x_t, i)
        variational = self.chain.num_steps * kl.sum(-1)
        prior = self._prior_kl.to(device)[x0].sum(-1)
        cross_entropy = cross_entropy.sum(-1)
        loss = (variational + prior).to(output.dtype) + self.hybrid_weight * cross_entropy
        return check_finite_loss(loss, "x_t cannot be reached from x0 at step i, or output gives the data 0 mass")
