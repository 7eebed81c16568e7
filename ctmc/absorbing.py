"""The absorbing (masking) rate matrix.

States 0 .. V-1 are the vocabulary and state V (`mask_index`, the last) is [MASK]. Every non-mask state jumps
to the mask at rate 1 and the mask never leaves: Q[i, V] = 1, Q[i, i] = -1 for i < V, Q[V, :] = 0. Then
P(t)[i, i] = e^{-t}, P(t)[i, V] = 1 - e^{-t} for i < V and P(t)[V, V] = 1. This is the transpose of the
column-convention Q^absorb of SEDD/RADD (its row of ones at the bottom is our column of ones on the right).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.noise_ratio import log_mask_ratio
from ctmc.rate_matrix import RateMatrix
from ctmc.row_reductions import logsumexp_statistics


class Absorbing(RateMatrix):
    """The absorbing chain on `vocab_size + 1` states with the mask at index `vocab_size`."""

    def __init__(self, vocab_size: int) -> None:
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.num_states = vocab_size + 1

    @property
    def num_clean_states(self) -> int:
        """The vocabulary: a clean token is never the mask."""
        return self.vocab_size

    exchangeable = True  # every clean token plays the same role

    @property
    def mask_index(self) -> int:
        """The index of the [MASK] state: `vocab_size`, the last state."""
        return self.vocab_size

    score_factorises = True  # s_y = p(x0^i = y | x_t) / expm1(sigma-bar) at a mask (RADD)
    score_entropy_checks_values = True  # its closed form reads log_score through ctmc.row_reductions

    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        n, mask = self.num_states, self.mask_index
        q = -torch.eye(n, dtype=dtype, device=device)
        q[:, mask] += 1.0
        return q

    def _transition(self, t: Tensor) -> Tensor:
        n, mask = self.num_states, self.mask_index
        stay = torch.exp(-t)[..., None]
        eye = torch.eye(n, dtype=t.dtype, device=t.device)
        out = stay[..., None] * eye
        out[..., :, mask] = -torch.expm1(-t)[..., None]
        out[..., mask, mask] = 1.0
        return out

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        masked = x == self.mask_index
        out = torch.zeros(*x.shape, self.num_states, dtype=t.dtype, device=x.device)
        out.scatter_(-1, x[..., None], torch.where(masked, 1.0, torch.exp(-t)).to(t.dtype)[..., None])
        out[..., self.mask_index] += torch.where(masked, 0.0, -torch.expm1(-t)).to(t.dtype)
        return out

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        # Column x of P(t): e^{-t} at y = x for a token; (1 - e^{-t}, ..., 1 - e^{-t}, 1) for the mask.
        masked = x == self.mask_index
        out = torch.where(masked, -torch.expm1(-t), 0.0).to(t.dtype)[..., None].repeat_interleave(self.num_states, -1)
        out.scatter_(-1, x[..., None], torch.where(masked, 1.0, torch.exp(-t)).to(t.dtype)[..., None])
        return out

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        out = torch.exp(-t)[..., None] * p
        moved = -torch.expm1(-t) * p[..., : self.mask_index].sum(-1)
        out[..., self.mask_index] = p[..., self.mask_index] + moved
        return out

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        return torch.where(u < -torch.expm1(-t.double()), self.mask_index, x)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        masked = (x != self.mask_index).double()
        out = torch.zeros(*x.shape, self.num_states, dtype=torch.float64, device=x.device)
        out.scatter_(-1, x[..., None], -masked[..., None])
        out[..., self.mask_index] += masked
        return out

    def _incoming_rates(self, x: Tensor) -> Tensor:
        # Column x of Q: -1 at y = x for a token; ones (and 0 at the mask) for the mask.
        masked = x == self.mask_index
        out = masked.double()[..., None].repeat_interleave(self.num_states, -1)
        out[..., self.mask_index] = 0.0
        return out.scatter_(-1, x[..., None], torch.where(masked, 0.0, -1.0).double()[..., None])

    def _exit_rate(self, x: Tensor) -> Tensor:
        return (x != self.mask_index).double()

    def _reachable(self, x0: Tensor, x_t: Tensor) -> Tensor:
        return (x_t == x0) | (x_t == self.mask_index)

    def _limit_law(self, device: torch.device) -> Tensor:
        law = torch.zeros(self.num_states, dtype=torch.float64, device=device)
        law[self.mask_index] = 1.0
        return law

    def _sample_limit(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        return torch.full(shape, self.mask_index, dtype=torch.long, device=device)

    def _prior_kl(self, x0: Tensor, total: Tensor) -> Tensor:
        # P(total)[x0, :] puts e^{-total} on the clean x0, which the all-mask law misses: KL = 0 or inf.
        return torch.where(torch.exp(-total) > 0, float("inf"), 0.0).double()

    # Reverse rates: Q[y, mask] = 1 for every clean y and Q[y, x] = 0 for a clean x, so only masked positions
    # move, at total rate sum_{y < V} s_y, to y proportional to s_y.
    def _reverse_exit_rate(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        # Sum over the contiguous last dimension (a strided slice with a dtype change is ~40x slower), then drop
        # the mask column of a full-width score.
        sums = score.sum(-1).double()
        if score.shape[-1] > self.vocab_size:
            sums = sums - score[..., self.vocab_size :].sum(-1).double()
        if scale is not None:
            sums = sums * scale.double()
        return torch.where(x == self.mask_index, sums.clamp_min(0.0), 0.0)

    def _reverse_rates_to(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        picked = score[..., : self.vocab_size].double()
        weight = (x == self.mask_index).double()
        if scale is not None:
            weight = weight * scale.double()
        return torch.cat([picked * weight[..., None], picked.new_zeros(*picked.shape[:-1], 1)], dim=-1)

    def analytic_jump_probability(
        self, x: Tensor, score: Tensor, delta: Tensor, scale: Tensor | None = None
    ) -> Tensor:
        """A masked position unmasks with probability min(1, expm1(delta) sum_{y < V} s_y); a clean one stays."""
        exit_rate = self.reverse_exit_rate(x, score, scale)
        probability = (torch.expm1(delta.double()) * exit_rate).clamp(max=1.0)
        return torch.where(exit_rate > 0, probability, 0.0)

    def analytic_destinations(
        self, x: Tensor, score: Tensor, delta: Tensor, scale: Tensor | None = None
    ) -> Tensor:
        """Unmasking to y proportional to s_y (the reverse rates; the factor expm1(delta) cancels)."""
        return self.reverse_rates_to(x, score, scale)

    def _score_from_posterior(self, x: Tensor, probs: Tensor, total: Tensor) -> Tensor:
        """Masked x: every x0 reaches the mask (P[x0, V] = 1 - e^{-total} for a token, 1 for the mask), so
        s_y = p_y e^{-total} / (1 - e^{-total}) = p_y / expm1(total) for tokens y and s_V = 1 (p normalised).
        Clean x: only x0 = x reaches it, s = e_x + expm1(total) e_V (s = e_x if p_x = 0)."""
        vocab = self.vocab_size
        masked = x == self.mask_index
        growth = torch.expm1(total.double())
        mass = probs.sum(-1, dtype=torch.float64)
        own = probs.gather(-1, x.clamp(max=probs.shape[-1] - 1)[..., None]).squeeze(-1).double()
        known = torch.where(masked, mass, own) > 0
        tokens = probs[..., :vocab].double() / (growth * torch.where(known, mass, 1.0))[..., None]
        tokens = torch.where((masked & known)[..., None], tokens, 0.0)
        mask_column = torch.where(masked, 1.0, torch.where(known, growth, 0.0))
        return torch.cat([tokens, mask_column[..., None]], -1).scatter(-1, x[..., None], 1.0)

    def _score_entropy(self, log_score: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """Masked positions: w_y = 1 for every token y and r_y = [y = x0] / expm1(sigma-bar), so
        l = r [expm1(lse_{y < V} log s_y - log r) - (log s_x0 - log r)]; unmasked positions: 0."""
        vocab = self.vocab_size
        log_r = log_mask_ratio(total).to(log_score.dtype)[:, None]
        masked = x_t == vocab
        zero = torch.zeros((), dtype=log_score.dtype, device=log_score.device)
        stats = logsumexp_statistics(log_score, x0[..., None], width=vocab)
        # Unmasked positions are zeroed before expm1 so that garbage there cannot overflow into the gradient.
        spread = torch.where(masked, stats.lse - log_r, zero)
        target = torch.where(masked, stats.gathered.squeeze(-1) - log_r, zero)
        return torch.exp(log_r) * (torch.expm1(spread) - target)

    def d3pm_terms(
        self, logits: Tensor, x0: Tensor, x_t: Tensor, step: Tensor, before: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Closed form, with Q_i = (1 - beta) I + beta 1 e_M^T, abar = e^{-before}, 1 - beta = e^{-step} and
        p = softmax(logits). Unmasked x_i = x0: both posteriors are the point mass at x0, KL = 0. Masked x_i = M:

            q(y) = [beta abar [y = x0], (1 - abar) at M] / Z,  Z = beta abar + 1 - abar,
            p_theta(y) = [beta abar p_y (y < V), abar p_M + 1 - abar at M] / Z_theta,
            Z_theta = Z + (1 - beta) abar p_M, so
            KL = (beta abar / Z) (-log p_x0) + log1p((1 - beta) abar p_M / Z)
                 - ((1 - abar) / Z) log1p(abar p_M / (1 - abar)).

        An unmasked x_i != x0 (or at a step where nothing survives) cannot be reached: NaN.
        """
        stats = logsumexp_statistics(logits, torch.stack([x0, torch.full_like(x0, self.mask_index)], -1))
        log_p = stats.gathered.double() - stats.lse.double()[..., None]  # (B, L, 2): log p at x0 and at the mask
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
        kl = torch.where(x_t == self.mask_index, kl_masked, unmasked)
        return kl, stats.lse - stats.gathered[..., 0]
