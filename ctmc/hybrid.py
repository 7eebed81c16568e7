"""The hybrid of the uniform and absorbing chains: a token is either redrawn uniformly or masked.

GIDD (von Ruette et al. 2025) interpolates between masking and uniform noise; this is its time-homogeneous
CTMC form. States 0 .. V-1 are the vocabulary and state V (`mask_index`, the last) is [MASK]. A clean token is
redrawn uniformly from the V tokens (itself included) at rate `uniform_rate` = a and jumps to the mask at rate
`mask_rate` = b; the mask never leaves:

    Q[i, j] = a / V (i != j < V),  Q[i, V] = b,  Q[i, i] = -(a (V - 1) / V + b),  Q[V, :] = 0.

The two clocks are independent, so for a clean x, with alpha = e^{-a t} and u = (1 - alpha) / V,

    P(t)[x, y] = e^{-b t} (alpha [y = x] + u)  (y < V),   P(t)[x, V] = 1 - e^{-b t},   P(t)[V, :] = e_V.

a = 0 is the absorbing chain (use `ctmc.Absorbing`); without the mask it is the uniform chain on V states.
The limit law is the mask. Every method below is a closed form that never forms an n x n matrix.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ctmc.rate_matrix import RateMatrix
from ctmc.row_reductions import bregman_statistics


class Hybrid(RateMatrix):
    """Uniform redraws at rate `uniform_rate` and masking at rate `mask_rate` on `vocab_size + 1` states."""

    def __init__(self, vocab_size: int, uniform_rate: float = 1.0, mask_rate: float = 1.0) -> None:
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        for name, value in (("uniform_rate", uniform_rate), ("mask_rate", mask_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r} (uniform_rate 0: ctmc.Absorbing)")
        self.vocab_size = vocab_size
        self.num_states = vocab_size + 1
        self.uniform_rate = float(uniform_rate)
        self.mask_rate = float(mask_rate)

    @property
    def num_clean_states(self) -> int:
        """The vocabulary: a clean token is never the mask."""
        return self.vocab_size

    exchangeable = True  # every clean token plays the same role
    score_entropy_checks_values = True  # its closed form reads log_score through ctmc.row_reductions

    @property
    def mask_index(self) -> int:
        """The index of the [MASK] state: `vocab_size`, the last state."""
        return self.vocab_size

    # ---- the generator and the transition ------------------------------------------------------------------
    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        vocab, a, b = self.vocab_size, self.uniform_rate, self.mask_rate
        q = torch.zeros(self.num_states, self.num_states, dtype=dtype, device=device)
        q[:vocab, :vocab] = a / vocab
        q[:vocab, vocab] = b
        q[:vocab, :vocab] -= torch.diag(torch.full((vocab,), a + b, dtype=dtype, device=device))
        return q

    def _factors(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(e^{-b t} alpha, e^{-b t} u, 1 - e^{-b t}): the weights of staying, of each token and of the mask."""
        survive = torch.exp(-self.mask_rate * t)
        keep = survive * torch.exp(-self.uniform_rate * t)
        spread = survive * -torch.expm1(-self.uniform_rate * t) / self.vocab_size
        return keep, spread, -torch.expm1(-self.mask_rate * t)

    def _transition(self, t: Tensor) -> Tensor:
        states = torch.arange(self.num_states, device=t.device)
        return self._transition_from(states.expand(*t.shape, -1), t[..., None].expand(*t.shape, self.num_states))

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        keep, spread, masked = self._factors(t)
        clean = x != self.mask_index
        out = torch.where(clean, spread, 0.0)[..., None].repeat_interleave(self.num_states, -1)
        out[..., self.mask_index] = torch.where(clean, masked, 1.0)
        token = x[..., None].clamp(max=self.vocab_size - 1)
        return out.scatter_add_(-1, token, torch.where(clean, keep, 0.0)[..., None])

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        # Column x: e^{-bt}(alpha [y = x] + u) for y < V and 0 at the mask if x is a token; (1 - e^{-bt}, ..., 1).
        keep, spread, masked = self._factors(t)
        clean = x != self.mask_index
        out = torch.where(clean, spread, masked)[..., None].repeat_interleave(self.num_states, -1)
        out[..., self.mask_index] = torch.where(clean, 0.0, 1.0).to(out.dtype)
        token = x[..., None].clamp(max=self.vocab_size - 1)
        return out.scatter_add_(-1, token, torch.where(clean, keep, 0.0)[..., None])

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        # Closed form in t, also used at negative t (the analytic step's backward factor).
        keep, spread, masked = self._factors(t)
        tokens = p[..., : self.vocab_size]
        clean_mass = tokens.sum(-1, keepdim=True)
        out = torch.cat([keep[..., None] * tokens + spread[..., None] * clean_mass, p[..., self.vocab_size :]], -1)
        out[..., self.mask_index] += masked * clean_mass.squeeze(-1)
        return out

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        t = t.double()
        u = torch.rand((2, *x.shape), dtype=torch.float64, device=x.device, generator=generator)
        fresh = torch.randint(0, self.vocab_size, x.shape, device=x.device, generator=generator)
        redrawn = torch.where(u[0] < -torch.expm1(-self.uniform_rate * t), fresh, x)
        masked = (u[1] < -torch.expm1(-self.mask_rate * t)) | (x == self.mask_index)
        return torch.where(masked, self.mask_index, redrawn)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        clean = (x != self.mask_index).double()
        out = (clean * self.uniform_rate / self.vocab_size)[..., None].repeat_interleave(self.num_states, -1)
        out[..., self.mask_index] = clean * self.mask_rate
        return out.scatter_(-1, x[..., None], -self._exit_rate(x)[..., None])

    def _incoming_rates(self, x: Tensor) -> Tensor:
        # Column x of Q: a / V from every other token and 0 from the mask if x is a token; b from every token if
        # x is the mask.
        rate = self._reverse_weight(x)
        out = rate[..., None].repeat_interleave(self.num_states, -1)
        out[..., self.mask_index] = 0.0
        return out.scatter_(-1, x[..., None], -self._exit_rate(x)[..., None])

    def _exit_rate(self, x: Tensor) -> Tensor:
        rate = self.uniform_rate * (self.vocab_size - 1) / self.vocab_size + self.mask_rate
        return (x != self.mask_index).double() * rate

    def _reachable(self, x0: Tensor, x_t: Tensor) -> Tensor:
        return (x0 != self.mask_index) | (x_t == self.mask_index)

    # ---- the limit law -------------------------------------------------------------------------------------
    def _limit_law(self, device: torch.device) -> Tensor:
        law = torch.zeros(self.num_states, dtype=torch.float64, device=device)
        law[self.mask_index] = 1.0
        return law

    def _sample_limit(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        return torch.full(shape, self.mask_index, dtype=torch.long, device=device)

    def _prior_kl(self, x0: Tensor, total: Tensor) -> Tensor:
        return torch.where(torch.exp(-self.mask_rate * total) > 0, float("inf"), 0.0).double()

    # ---- the reverse process -------------------------------------------------------------------------------
    # Q[y, V] = b for every token y; Q[y, x] = a / V for tokens y != x < V (0 from the mask): a masked position
    # leaves at rate b sum_{y < V} s_y, a token at rate (a / V)(sum_{y < V} s_y - s_x), to y proportional to s_y.
    def _clean_sums(self, x: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """(sum_{y < V} s_y, s_x at token positions, 0 at masks), float64."""
        sums = score.sum(-1).double()
        if score.shape[-1] > self.vocab_size:
            sums = sums - score[..., self.vocab_size :].sum(-1).double()
        own = score.gather(-1, x.clamp(max=self.vocab_size - 1)[..., None]).squeeze(-1).double()
        return sums, torch.where(x == self.mask_index, 0.0, own)

    def _reverse_weight(self, x: Tensor) -> Tensor:
        """Q[y, x] for a token y != x: b into the mask, a / V into a token. (...) float64."""
        masked = (x == self.mask_index).double()
        return masked * self.mask_rate + (1.0 - masked) * (self.uniform_rate / self.vocab_size)

    def _reverse_exit_rate(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        sums, own = self._clean_sums(x, score)
        rate = self._reverse_weight(x) * (sums - own).clamp_min(0.0)
        return rate if scale is None else rate * scale.double()

    def _reverse_rates_to(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        weight = self._reverse_weight(x) if scale is None else self._reverse_weight(x) * scale.double()
        tokens = score[..., : self.vocab_size].double() * weight[..., None]
        rates = torch.cat([tokens, tokens.new_zeros(*tokens.shape[:-1], 1)], -1)
        return rates.scatter_(-1, x[..., None], 0.0)

    # ---- score entropy -------------------------------------------------------------------------------------
    def _score_entropy(self, log_score: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """Closed form in one pass over the vocabulary. With alpha = e^{-a sigma-bar}, u = (1 - alpha) / V and
        m = 1 - e^{-b sigma-bar}, every ratio r_y = P[x0, y] / P[x0, x_t] over the tokens y that can jump to x_t
        is one base value except at y = x0:

        - x_t = mask: weight b; base r = e^{-b sigma-bar} u / m, r_x0 = e^{-b sigma-bar} (alpha + u) / m;
        - x_t = x0: weight a / V; base r = u / (alpha + u), no special term;
        - x_t another token: weight a / V; base r = 1, r_x0 = (alpha + u) / u.

        l = weight [r_base sum_{y < V, y not in {x_t, x0}} phi(log s_y - log r_base) + [x0 != x_t] r_x0 phi(...)].
        """
        sigma_bar = total.double()[:, None]  # (B, 1)
        log_alpha = -self.uniform_rate * sigma_bar
        log_u = torch.log(-torch.expm1(-self.uniform_rate * sigma_bar)) - math.log(self.vocab_size)
        log_m = torch.log(-torch.expm1(-self.mask_rate * sigma_bar))
        log_survive = -self.mask_rate * sigma_bar
        log_kept = torch.logaddexp(log_alpha, log_u)  # log(alpha + u)
        masked, same = x_t == self.mask_index, x_t == x0
        zero = torch.zeros_like(log_u)
        base = torch.where(masked, log_survive + log_u - log_m, torch.where(same, log_u - log_kept, zero))
        special = torch.where(masked, log_survive + log_kept - log_m, log_kept - log_u)
        exclude = torch.stack([x_t, x0, torch.full_like(x0, self.mask_index)], dim=-1)
        stats = bregman_statistics(log_score, base.to(log_score.dtype), exclude, x0[..., None])
        special = special.to(log_score.dtype)
        # Zeroed before expm1 where x_t = x0 (no special term: phi(0) = 0), so that the entry at x_t, which is not
        # read, cannot reach the gradient.
        v = torch.where(same, 0.0, stats.gathered.squeeze(-1) - special)
        special_term = torch.exp(special) * (torch.expm1(v) - v)
        weight = self._reverse_weight(x_t).to(log_score.dtype)
        return weight * (torch.exp(base.to(log_score.dtype)) * stats.total + special_term)

    def __repr__(self) -> str:
        return f"Hybrid(vocab_size={self.vocab_size}, uniform_rate={self.uniform_rate}, mask_rate={self.mask_rate})"
