"""The prior term that turns the continuous-time losses into a true upper bound on -log p_theta(x0).

The reverse process of a sampler starts at t = 1 from a data-independent prior pi (per token), not from the
forward marginal p_1 of the data, which it cannot know. The continuous-time ELBO (SEDD, Lou et al. 2024,
Theorem 3.6; Campbell et al. 2022) of the model started from pi^L is

    -log p_theta(x0) <= E_t[loss(x0)] + KL(p_{1|0}(. | x0) || pi^L) + reconstruction,

and the losses of this package estimate only the first term. Per sequence, the second is the sum over the
positions of KL(P(sigma-bar(1))[x0^i, :] || pi), where P is the rate matrix's transition. The reconstruction
term is 0 here: every schedule has total(0) = 0 (x_0 is the data itself) and the losses integrate t over
all of (0, 1], so no step of the bound is left at t = 0.

Default prior: the t = 1 forward marginal of a uniformly drawn clean token, pi = u P(sigma-bar(1)).
- Absorbing(V): pi = (e^{-T}/V, ..., e^{-T}/V, 1 - e^{-T}) with T = sigma-bar(1), and for every clean x0 the
  row is e^{-T} at x0 and 1 - e^{-T} at the mask, so KL = e^{-T} log(e^{-T} / (e^{-T} / V)) = e^{-T} log V
  per token; for LogLinear(eps), e^{-T} = eps: exactly eps log V nats per token. Against the all-mask prior
  (pi = one-hot of the mask) the KL is infinite while eps > 0.
- Uniform(n): pi is uniform (the chain's stationary law), and with a = e^{-T} + (1 - e^{-T})/n, b = (1 - e^{-T})/n,
  KL = a log(n a) + (n - 1) b log(n b) per token.

For the exact model (the true score, reverse process started from the data's own p_1) the losses'
expectation over the data is H(p0) - I(X0; X1), below the entropy: without the prior term the reported number
is not a bound. With it, the expectation is H(p0) + KL(p_1 || pi^L) >= H(p0), and per x0 it bounds the NLL of
the model that a sampler actually runs (started from pi^L); tests/losses/test_prior.py checks both.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from losses._validation import check_tokens

CHUNK_ELEMENTS = 1 << 22  # float64 entries per block of transition rows (32 MiB)


def forward_prior(process: ctmc.ForwardProcess) -> Tensor:
    """pi = u P(sigma-bar(1)): the t = 1 forward marginal of a clean token drawn uniformly. Returns (n,) float64."""
    rate_matrix = process.rate_matrix
    uniform = torch.zeros(rate_matrix.num_states, dtype=torch.float64)
    uniform[: rate_matrix.num_clean_states] = 1.0 / rate_matrix.num_clean_states
    return rate_matrix.propagate(uniform, process.total(torch.tensor(1.0, dtype=torch.float64)))


class PriorKL:
    """KL(p_{1|0}(. | x0) || pi^L) per sequence, in nats: the prior term of the ELBO (module docstring).

    process: a ctmc.ForwardProcess; prior: (n,) probabilities pi, by default `forward_prior(process)`.
    The per-token KL of each clean token is computed once, from rate_matrix.transition_from in blocks of
    rows, when the token first occurs, and cached (a (num_clean_states,) float64 table). With the default prior
    on Absorbing or Uniform it is the same for every token (both commute with permutations of the clean
    states), so one row is computed for the whole table.
    """

    def __init__(self, process: ctmc.ForwardProcess, prior: Tensor | None = None) -> None:
        if not isinstance(process, ctmc.ForwardProcess):
            raise TypeError(f"process must be a ctmc.ForwardProcess, got {type(process).__name__}")
        n = process.num_states
        default_prior = prior is None
        if prior is None:
            prior = forward_prior(process)
        if not isinstance(prior, Tensor) or not prior.is_floating_point() or prior.shape != (n,):
            raise ValueError(f"prior must be a floating tensor of shape (n,) = ({n},), one probability per state")
        prior = prior.detach().to("cpu", torch.float64)
        if bool((prior < 0).any()) or abs(float(prior.sum()) - 1.0) > 1e-9:
            raise ValueError(f"prior must be non-negative and sum to 1, got sum {float(prior.sum()):.12g}")
        self.process = process
        self.prior = prior
        self.total = process.total(torch.tensor(1.0, dtype=torch.float64))  # sigma-bar(1)
        self._table = torch.full((process.rate_matrix.num_clean_states,), float("nan"), dtype=torch.float64)
        # A chain that commutes with every permutation of the clean states (rate_matrix.clean_states_exchangeable:
        # Absorbing, Uniform) maps the uniform law to a prior invariant under them: KL(P[x, :] || pi) is then the
        # same for every clean token x.
        self._symmetric = default_prior and process.rate_matrix.clean_states_exchangeable

    def _fill(self, tokens: Tensor) -> None:
        """Compute the table entries of the given (K,) clean tokens."""
        if self._symmetric:  # the same KL for every clean token: compute one row, fill the table
            tokens = tokens[:1]
        rows_per_block = max(1, CHUNK_ELEMENTS // self.process.num_states)
        for block in tokens.split(rows_per_block):
            rows = self.process.rate_matrix.transition_from(block, self.total)  # (k, n) float64
            # sum_y r_y log(r_y / pi_y) with 0 log 0 = 0 (xlogy), +inf where r_y > 0 = pi_y.
            kl = (torch.xlogy(rows, rows) - torch.xlogy(rows, self.prior)).sum(-1)
            if self._symmetric:
                self._table.fill_(float(kl[0]))
                return
            self._table[block] = kl

    def per_token(self, tokens: Tensor) -> Tensor:
        """KL(P(sigma-bar(1))[x, :] || pi) for every clean token x. tokens: (...) long. Returns (...) float64."""
        clean = self._table.shape[0]
        flat = check_tokens(tokens.reshape(1, -1), clean, "x0", what="clean token ids (the mask is not a data token)")
        unique = flat.unique().cpu()
        missing = unique[torch.isnan(self._table[unique])]
        if missing.numel():
            self._fill(missing)
        return self._table.to(tokens.device)[tokens.long()]

    def __call__(self, x0: Tensor) -> Tensor:
        """sum_i KL(P(sigma-bar(1))[x0^i, :] || pi): x0 (B, L) long clean tokens. Returns (B,) float64 nats."""
        x0 = check_tokens(x0, self._table.shape[0], "x0", what="clean token ids (the mask is not a data token)")
        return self.per_token(x0).sum(-1)

    def __repr__(self) -> str:
        return f"PriorKL({self.process!r})"
